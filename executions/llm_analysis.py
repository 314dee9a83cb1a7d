"""Optional LLM analysis of a failed execution through an OpenAI-compatible endpoint.

Off unless `SWITCHYARD_LLM_BASE_URL` is set. The prompt carries the same evidence as the
rule-based diagnosis (as JSON), with every value of the secrets visible to the workflow masked
again (stored output is masked already; this guards the rest). Each request and its answer (or
error) is stored as a `FailureAnalysis` row of the execution.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder

from executions.analysis_models import FailureAnalysis
from executions.models import Execution
from orchestrator.secret_box import decrypt
from orchestrator.secret_store import mask, masked_forms, sensitive_values, visible_secrets

SYSTEM_PROMPT = (
    "You are an on-call engineer analysing a failed run of a job-orchestration workflow. "
    "You get the evidence collected by a rule-based diagnosis as JSON: the failed node, its "
    "error, exit code, stderr tail, what changed since the last successful run and how often "
    "the node failed recently. Answer in a few short paragraphs: the most likely root cause, "
    "how to confirm it, and the next action. Say so when the evidence is not enough."
)


def enabled() -> bool:
    return bool(settings.SWITCHYARD_LLM_BASE_URL)


def secret_forms(execution: Execution) -> list[str]:
    values: list[str] = []
    for secret in visible_secrets(execution.workflow):
        values.extend(sensitive_values(decrypt(secret.ciphertext)))
    return masked_forms(values)


def build_prompt(execution: Execution, diagnosis: dict[str, Any]) -> str:
    evidence = json.loads(json.dumps(diagnosis, cls=DjangoJSONEncoder))
    evidence = mask(evidence, secret_forms(execution))
    return (
        f"Workflow '{execution.workflow.slug}', execution {execution.pk} ended "
        f"{execution.status}.\nEvidence:\n{json.dumps(evidence, indent=2, sort_keys=True)}"
    )


def chat_completion(prompt: str) -> str:
    headers = {"Content-Type": "application/json"}
    if settings.SWITCHYARD_LLM_API_KEY:
        headers["Authorization"] = f"Bearer {settings.SWITCHYARD_LLM_API_KEY}"
    response = httpx.post(
        f"{settings.SWITCHYARD_LLM_BASE_URL}/v1/chat/completions",
        headers=headers,
        json={
            "model": settings.SWITCHYARD_LLM_MODEL,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": prompt},
            ],
        },
        timeout=settings.SWITCHYARD_LLM_TIMEOUT,
    )
    response.raise_for_status()
    return response.json()["choices"][0]["message"]["content"]


def analyse(execution: Execution, diagnosis: dict[str, Any], user=None) -> FailureAnalysis:
    """Ask the LLM about `execution` and store what it answered (or why it could not)."""
    prompt = build_prompt(execution, diagnosis)
    analysis = FailureAnalysis(
        execution=execution,
        model=settings.SWITCHYARD_LLM_MODEL,
        prompt=prompt,
        requested_by=user if user is not None and user.is_authenticated else None,
    )
    try:
        analysis.answer = chat_completion(prompt)
    except httpx.HTTPStatusError as error:
        analysis.error = f"the LLM endpoint answered HTTP {error.response.status_code}"
    except httpx.HTTPError as error:
        analysis.error = f"the LLM endpoint could not be reached: {error}"
    except (KeyError, IndexError, TypeError, ValueError) as error:
        analysis.error = f"unexpected answer from the LLM endpoint: {error!r}"
    analysis.save()
    return analysis


def latest(execution: Execution) -> FailureAnalysis | None:
    return execution.analyses.order_by("-created_at", "-id").first()
