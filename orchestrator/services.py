"""Workflow definitions: validate, store as immutable versions, publish."""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import yaml
from django.db import transaction

from orchestrator.engine import DefinitionError, ValidationIssue, WorkflowSpec, load_definition
from orchestrator.models import Workflow, WorkflowVersion

SPEC_CACHE_SIZE = 512
spec_cache: OrderedDict[tuple[int, Any], WorkflowSpec] = OrderedDict()


def validate_definition(definition: str | Mapping[str, Any]) -> WorkflowSpec:
    """Parse and validate a definition (YAML/JSON text or a mapping); raise DefinitionError."""
    if not isinstance(definition, str | Mapping):
        raise DefinitionError([ValidationIssue("", "must be YAML/JSON text or an object")])
    spec = load_definition(definition)
    issues = output_references_outside_ancestry(spec)
    if issues:
        raise DefinitionError(issues)
    return spec


OUTPUT_REFERENCE = re.compile(
    r"nodes\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_-]*)|\[\s*['\"]([A-Za-z_][A-Za-z0-9_-]*)['\"]\s*\])"
    r"\s*(?:\.\s*|\[\s*['\"])outputs?\b"
)


def ancestors_of(spec: WorkflowSpec, node_id: str) -> set[str]:
    seen: set[str] = set()
    stack = [source for source, _ in spec.predecessors(node_id)]
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(source for source, _ in spec.predecessors(current))
    return seen


def output_references_outside_ancestry(spec: WorkflowSpec) -> list[ValidationIssue]:
    """A node can only read the output of nodes upstream of it: any other node may not have
    run yet, so `nodes.<id>.output` would be undefined at run time. Catch it at save time."""
    issues = []
    for index, node in enumerate(spec.nodes.values()):
        referenced = {
            a or b for a, b in OUTPUT_REFERENCE.findall(json.dumps(node.raw, default=str))
        }
        if not referenced:
            continue
        upstream = ancestors_of(spec, node.id)
        for target in sorted(referenced & spec.nodes.keys() - upstream - {node.id}):
            issues.append(
                ValidationIssue(
                    f"nodes[{index}]",
                    f"reads nodes.{target}.output, but '{target}' is not upstream of "
                    f"'{node.id}' (add an edge path from '{target}' to '{node.id}')",
                )
            )
    return issues


def source_text(definition: str | Mapping[str, Any]) -> str:
    if isinstance(definition, str):
        return definition
    return yaml.safe_dump(json.loads(json.dumps(definition)), sort_keys=False)


def spec_for_version(version: WorkflowVersion) -> WorkflowSpec:
    """The parsed spec of a version. Versions never change, so parsing is cached per process,
    keyed by id and creation time: an id reused after the table was emptied (a restored
    database, a test) never returns another definition's spec."""
    key = (version.pk, version.__dict__.get("created_at"))
    spec = spec_cache.get(key)
    if spec is not None:
        spec_cache.move_to_end(key)
        return spec
    spec = load_definition(version.definition)
    spec_cache[key] = spec
    if len(spec_cache) > SPEC_CACHE_SIZE:
        spec_cache.popitem(last=False)
    return spec


def definition_error(issues: list[ValidationIssue], prefix: str = "definition") -> DefinitionError:
    error = DefinitionError(issues)
    error.path_prefix = prefix
    return error


@transaction.atomic
def create_workflow(definition: str | Mapping[str, Any], user=None) -> Workflow:
    """Create a workflow from a definition; its first version is published at once."""
    spec = validate_definition(definition)
    if Workflow.objects.filter(slug=spec.slug).exists():
        raise definition_error([ValidationIssue("slug", f"workflow '{spec.slug}' already exists")])
    workflow = Workflow.objects.create(
        slug=spec.slug, name=spec.name, description=spec.description, created_by=user
    )
    version = save_version(workflow, spec, source_text(definition), user)
    workflow.published_version = version
    workflow.save(update_fields=["published_version", "updated_at"])
    from orchestrator.triggers import sync_triggers  # late: it imports executions

    sync_triggers(workflow)
    return workflow


def save_version(workflow: Workflow, spec: WorkflowSpec, source: str, user=None) -> WorkflowVersion:
    locked = Workflow.objects.select_for_update().get(pk=workflow.pk)
    number = locked.latest_version_number + 1
    version = WorkflowVersion.objects.create(
        workflow=locked, number=number, definition=spec.raw, source=source, created_by=user
    )
    Workflow.objects.filter(pk=workflow.pk).update(
        latest_version_number=number, name=spec.name, description=spec.description
    )
    workflow.latest_version_number = number
    workflow.name = spec.name
    workflow.description = spec.description
    return version


@transaction.atomic
def add_version(workflow: Workflow, definition: str | Mapping[str, Any], user=None):
    """Save a new draft version of an existing workflow (the slug must match)."""
    spec = validate_definition(definition)
    if spec.slug != workflow.slug:
        raise definition_error(
            [ValidationIssue("slug", f"must be '{workflow.slug}' (the workflow's slug)")]
        )
    return save_version(workflow, spec, source_text(definition), user)


@transaction.atomic
def publish_version(workflow: Workflow, number: int | None = None) -> WorkflowVersion:
    """Publish `number` (default: the latest); triggers and plain executes run it."""
    versions = WorkflowVersion.objects.filter(workflow=workflow)
    version = versions.filter(number=number).first() if number else versions.first()
    if version is None:
        raise LookupError(number)
    Workflow.objects.filter(pk=workflow.pk).update(published_version=version)
    workflow.published_version = version
    from orchestrator.triggers import sync_triggers  # late: it imports executions

    sync_triggers(workflow)
    return version
