"""Deployment files against the real schemas, from packages (no container engine or cluster here):

- `deploy/compose.yaml` against the Compose Specification's JSON schema that `check-jsonschema`
  ships (`vendor/compose-spec.json`), plus the references the schema cannot see (services named
  in `depends_on`, named volumes, health checks behind `service_healthy`, build contexts);
- every `deploy/k8s/*.yaml` document against the Kubernetes API's JSON schema of a pinned
  Kubernetes version in strict mode (unknown fields are errors), from `kubernetes-validate`.

Each check is also run on a broken copy, so a validator that accepts anything fails here.
"""

from __future__ import annotations

import copy
import json
from importlib.resources import files
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES_VERSION = "1.33.0"


# --- compose ------------------------------------------------------------------------------


def compose_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(
        (files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text()
    )
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)


def compose_problems(compose: dict) -> list[str]:
    """Schema violations and broken references, each as `path: message`."""
    problems = [
        f"{'.'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in compose_validator().iter_errors(compose)
    ]
    services = compose.get("services", {})
    declared_volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        depends_on = service.get("depends_on") or {}
        for target in depends_on:
            if target not in services:
                problems.append(f"services.{name}.depends_on: no service {target!r}")
                continue
            condition = (
                depends_on[target].get("condition") if isinstance(depends_on, dict) else None
            )
            if condition == "service_healthy" and "healthcheck" not in services[target]:
                problems.append(
                    f"services.{name}.depends_on.{target}: service_healthy without a healthcheck"
                )
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source")
            if source and not source.startswith((".", "/", "~")) and source not in declared_volumes:
                problems.append(f"services.{name}.volumes: volume {source!r} is not declared")
        build = service.get("build")
        if build:
            context = DEPLOY / (build if isinstance(build, str) else build.get("context", "."))
            if not context.is_dir():
                problems.append(f"services.{name}.build.context: {context} does not exist")
            dockerfile = build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else None
            if dockerfile and not (context / dockerfile).is_file():
                problems.append(f"services.{name}.build.dockerfile: {dockerfile} not found")
    return problems


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_file_follows_the_compose_specification(compose):
    assert compose_problems(compose) == []


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda c: c["services"]["redis"].update(healthchek={}), "'healthchek' was unexpected"),
        (
            lambda c: c["services"]["web"]["depends_on"].update(cache={"condition": "x"}),
            "services.web.depends_on",
        ),
        (lambda c: c["services"]["worker"].update(restart=["always"]), "services.worker.restart"),
        (lambda c: c["services"]["redis"].update(volumes=["cache:/data"]), "volume 'cache'"),
        (lambda c: c["services"]["migrate"]["build"].update(context="../nowhere"), "context"),
    ],
)
def test_compose_check_rejects_broken_files(compose, breakage, expected):
    broken = copy.deepcopy(compose)
    # Services that share an anchor share one dict after parsing: break a private copy.
    broken["services"] = {name: copy.deepcopy(svc) for name, svc in broken["services"].items()}
    breakage(broken)
    problems = compose_problems(broken)
    assert any(expected in problem for problem in problems), problems


# --- Kubernetes ---------------------------------------------------------------------------


def k8s_documents() -> list[tuple[str, dict]]:
    return [
        (f"{path.name}#{n}", doc)
        for path in sorted((DEPLOY / "k8s").glob("*.yaml"))
        for n, doc in enumerate(yaml.safe_load_all(path.read_text()))
        if doc
    ]


DOCUMENTS = k8s_documents()


@pytest.mark.parametrize(
    "document", [doc for _, doc in DOCUMENTS], ids=[name for name, _ in DOCUMENTS]
)
def test_manifest_is_valid_for_the_pinned_kubernetes_version(document):
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_every_manifest_file_is_checked():
    assert len(DOCUMENTS) >= 10
    assert {name.split("#")[0] for name, _ in DOCUMENTS} == {
        path.name for path in (DEPLOY / "k8s").glob("*.yaml")
    }


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: d["spec"]["template"]["spec"]["containers"][0].update(readinesProbe={}),
        lambda d: d["spec"].update(replicas="two"),
        lambda d: d["spec"]["template"]["spec"]["containers"][0].pop("name"),
    ],
    ids=["unknown field", "wrong type", "missing required field"],
)
def test_kubernetes_check_rejects_broken_manifests(breakage):
    web = next(
        doc
        for _, doc in DOCUMENTS
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "switchyard-web"
    )
    broken = copy.deepcopy(web)
    breakage(broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
