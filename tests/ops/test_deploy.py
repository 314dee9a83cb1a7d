"""Deployment files, validated by parsing and linting (no container engine here)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = sorted((DEPLOY / "k8s").glob("*.yaml"))
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
UID = 10001


def k8s_documents() -> list[dict]:
    docs = []
    for path in K8S:
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def by_kind(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in k8s_documents() if doc["kind"] == kind}


def pod_specs() -> list[tuple[str, dict]]:
    kinds = {"Deployment", "DaemonSet", "Job"}
    return [
        (f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"])
        for doc in k8s_documents()
        if doc["kind"] in kinds
    ]


def command_of(container: dict) -> str:
    return " ".join(container.get("command", []) + container.get("args", []))


# --- compose ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_has_every_process_with_health_checks(compose):
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "web", "worker", "beat", "agent"} <= set(services)
    for name in ("postgres", "redis", "web", "worker", "beat"):
        assert services[name]["healthcheck"]["test"], name
    web = " ".join(services["web"]["command"])
    assert "uvicorn orchestrator.asgi:application" in web and "--workers=2" in web
    worker = " ".join(services["worker"]["command"])
    assert "celery -A orchestrator.celery_app worker -Q control --pool threads -c 4" in worker
    assert " ".join(services["beat"]["command"]).startswith(
        "celery -A orchestrator.celery_app beat"
    )
    assert "switchyard-agent run" in " ".join(services["agent"]["command"])
    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])


def test_compose_redis_uses_aof_and_state_lives_in_volumes(compose):
    services = compose["services"]
    redis_cmd = services["redis"]["command"]
    assert redis_cmd[redis_cmd.index("--appendonly") + 1] == "yes"
    assert set(compose["volumes"]) >= {"postgres-data", "redis-data"}
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])
    assert any("/var/lib/postgresql/data" in v for v in services["postgres"]["volumes"])


def test_compose_processes_read_the_env_file_and_wait_for_migrations(compose):
    services = compose["services"]
    for name in ("migrate", "web", "worker", "beat", "agent"):
        assert services[name]["env_file"] == "switchyard.env", name
    for name in ("web", "worker", "beat"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"]["build"]["context"] == ".."


# --- Dockerfile ---------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)  # join continuation lines
    result = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def final_stage(instructions):
    starts = [i for i, (kw, _) in enumerate(instructions) if kw == "FROM"]
    return instructions[starts[-1] :], len(starts)


def test_dockerfile_is_multi_stage_with_a_non_root_final_stage():
    instructions = dockerfile_instructions()
    known = {"FROM", "ARG", "ENV", "RUN", "COPY", "WORKDIR", "USER", "EXPOSE", "HEALTHCHECK", "CMD"}
    assert {kw for kw, _ in instructions} <= known
    stage, stages = final_stage(instructions)
    assert stages >= 2
    assert "slim" in stage[0][1]
    users = [rest for kw, rest in stage if kw == "USER"]
    assert users, "the final stage must switch to a non-root USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert any(kw == "EXPOSE" and "8000" in rest.split() for kw, rest in stage)
    health = [rest for kw, rest in stage if kw == "HEALTHCHECK"]
    assert health and "/healthz" in health[0]
    runs = " ".join(rest for kw, rest in stage if kw == "RUN")
    assert "collectstatic" in runs
    assert any(kw == "RUN" and "pip wheel" in rest for kw, rest in instructions)
    assert any(kw == "COPY" and "--from=" in rest for kw, rest in stage)
    cmd = [rest for kw, rest in stage if kw == "CMD"][-1]
    assert "uvicorn orchestrator.asgi:application" in cmd


def test_dockerignore_keeps_local_state_and_secrets_out():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "var", ".env", "node_modules"} <= ignored


# --- Kubernetes ---------------------------------------------------------------------------


def test_manifests_parse_and_cover_the_design():
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in k8s_documents()}
    assert ("Namespace", "switchyard") in kinds
    for expected in [
        ("ConfigMap", "switchyard-config"),
        ("Secret", "switchyard-secrets"),
        ("Deployment", "switchyard-web"),
        ("Service", "switchyard-web"),
        ("Ingress", "switchyard-web"),
        ("PodDisruptionBudget", "switchyard-web"),
        ("Deployment", "switchyard-worker"),
        ("Deployment", "switchyard-beat"),
        ("DaemonSet", "switchyard-agent"),
        ("Job", "switchyard-migrate"),
    ]:
        assert expected in kinds
    for doc in k8s_documents():
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "switchyard", doc["metadata"]["name"]


def test_web_probes_service_ingress_and_pdb_line_up():
    web = by_kind("Deployment")["switchyard-web"]
    container = web["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    labels = web["spec"]["template"]["metadata"]["labels"]
    assert web["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = by_kind("Service")["switchyard-web"]
    assert service["spec"]["selector"].items() <= labels.items()
    pdb = by_kind("PodDisruptionBudget")["switchyard-web"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] < web["spec"]["replicas"]
    backend = by_kind("Ingress")["switchyard-web"]["spec"]["rules"][0]["http"]["paths"][0]
    assert backend["backend"]["service"]["name"] == "switchyard-web"
    assert "uvicorn orchestrator.asgi:application" in command_of(container)


def test_every_long_running_container_has_probes():
    for name, doc in {**by_kind("Deployment"), **by_kind("DaemonSet")}.items():
        for container in doc["spec"]["template"]["spec"]["containers"]:
            if doc["kind"] == "DaemonSet":
                continue  # the agent reports liveness itself (heartbeats to the control plane)
            assert "livenessProbe" in container, name
            if name != "switchyard-beat":  # beat serves nothing, so "ready" has no meaning
                assert "readinessProbe" in container, name


def test_beat_is_a_single_replica_recreated_never_surged():
    beat = by_kind("Deployment")["switchyard-beat"]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"
    assert "celery -A orchestrator.celery_app beat" in command_of(
        beat["spec"]["template"]["spec"]["containers"][0]
    )
    worker = by_kind("Deployment")["switchyard-worker"]
    assert "-Q control --pool threads -c 4" in command_of(
        worker["spec"]["template"]["spec"]["containers"][0]
    )


def test_every_container_runs_as_non_root_without_privilege_escalation():
    specs = pod_specs()
    assert len(specs) == 5
    for name, spec in specs:
        pod = spec.get("securityContext", {})
        for container in spec["containers"] + spec.get("initContainers", []):
            merged = {**pod, **container.get("securityContext", {})}
            assert merged.get("runAsNonRoot") is True, name
            assert merged.get("runAsUser", 0) != 0, name
            assert merged.get("allowPrivilegeEscalation") is False, name
            assert merged.get("readOnlyRootFilesystem") is True, name
            assert "ALL" in merged.get("capabilities", {}).get("drop", []), name
            sources = {next(iter(ref.values()))["name"] for ref in container.get("envFrom", [])} | {
                next(iter(env["valueFrom"].values()))["name"]
                for env in container.get("env", [])
                if "valueFrom" in env and "fieldRef" not in env["valueFrom"]
            }
            assert sources <= {"switchyard-config", "switchyard-secrets"}, name


def test_migrate_job_runs_migrate():
    job = by_kind("Job")["switchyard-migrate"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert command_of(container) == "python manage.py migrate --noinput"
    assert job["spec"]["template"]["spec"]["restartPolicy"] in {"OnFailure", "Never"}


# --- systemd ------------------------------------------------------------------------------


def unit_sections(path: Path) -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    current = None
    text = re.sub(r"\\\n", " ", path.read_text())
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current[key.strip()] = " ".join(value.split())
    return sections


def test_units_exist_and_are_hardened_like_the_agent_unit():
    names = {path.name for path in UNITS}
    assert {
        "switchyard-web.service",
        "switchyard-worker.service",
        "switchyard-beat.service",
        "switchyard-agent.service",
    } <= names
    agent = unit_sections(DEPLOY / "systemd" / "switchyard-agent.service")["Service"]
    hardening = {k for k in agent if k.startswith(("Protect", "Restrict", "NoNew", "Private"))}
    for name in ("web", "worker", "beat"):
        service = unit_sections(DEPLOY / "systemd" / f"switchyard-{name}.service")["Service"]
        assert hardening <= set(service), name
        assert service["User"] == "switchyard" and service["NoNewPrivileges"] == "yes"
        assert service["EnvironmentFile"] == "/etc/switchyard/switchyard.env"
        assert shlex.split(service["ExecStart"])[0].startswith("/opt/switchyard/bin/")
    web = unit_sections(DEPLOY / "systemd" / "switchyard-web.service")["Service"]
    assert "orchestrator.asgi:application" in web["ExecStart"] and "--workers 2" in web["ExecStart"]
    worker = unit_sections(DEPLOY / "systemd" / "switchyard-worker.service")["Service"]
    assert "worker -Q control --pool threads -c 4" in worker["ExecStart"]
    beat = unit_sections(DEPLOY / "systemd" / "switchyard-beat.service")["Service"]
    assert " beat " in beat["ExecStart"]


@pytest.mark.parametrize("unit", UNITS, ids=lambda path: path.name)
def test_systemd_analyze_verify_finds_no_syntax_errors(unit):
    assert shutil.which("systemd-analyze"), "install systemd (systemd-analyze) to verify the units"
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    output = result.stdout + result.stderr
    problems = [
        line
        for line in output.splitlines()
        if re.search(r"Unknown (key|section)|Invalid|Failed to parse|bad-setting|Missing '='", line)
    ]
    assert not problems, output
    # The only complaint allowed here: the /opt/... binaries are not installed on this machine.
    for line in output.splitlines():
        assert "is not executable" in line or "No such file" in line, output
