"""HTTP client for the control plane's agent API (``/api/agent/v1``).

The broker only tells an agent *which* job id to look at; everything else (what to run, with
which secrets, under which lease) comes from these authenticated calls.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from agents.agent import __version__

logger = logging.getLogger("switchyard.agent")

API_PREFIX = "/api/agent/v1"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
OUTPUT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
DEFAULT_OUTPUT_LIMIT = 10 * 1024 * 1024
CLAIM_RETRY_BUDGET = 60.0
REPORT_RETRY_BUDGET = 300.0
BACKOFF_INITIAL = 0.2
BACKOFF_CAP = 5.0

_RETRYABLE_CLIENT_ERRORS = frozenset({408, 425, 429})


def is_retryable_status(status: int) -> bool:
    """Whether repeating a request that got ``status`` can succeed (5xx, throttling…)."""
    return status >= 500 or status in _RETRYABLE_CLIENT_ERRORS


class ApiError(Exception):
    """The control plane answered with an error status."""

    def __init__(self, status: int, detail: str, errors: list[dict[str, Any]] | None = None):
        self.status = status
        self.detail = detail
        self.errors = errors or []
        super().__init__(str(self))

    def __str__(self) -> str:
        lines = [f"HTTP {self.status}: {self.detail}"]
        lines += [f"  {err.get('path', '')}: {err.get('message', '')}" for err in self.errors]
        return "\n".join(lines)

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        """Extract ``{detail, errors}`` from the body, tolerating non-JSON error pages."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            detail = str(body.get("detail") or response.reason_phrase)
            errors = body.get("errors")
            return cls(response.status_code, detail, errors if isinstance(errors, list) else None)
        text = response.text.strip()[:500] or response.reason_phrase
        return cls(response.status_code, text)


class LeaseLost(Exception):
    """The control plane answered 409: this agent's lease on the job is stale or superseded."""


@dataclass(frozen=True)
class OutputReply:
    """Answer to ``POST /jobs/{id}/output``; ``cancel`` asks the agent to kill the job now."""

    accepted: int = 0
    last_seq: int = 0
    cancel: bool = False


class ClaimUnavailable(Exception):
    """The claim could not be made within the retry budget; the message should be redelivered."""


class InvalidJobSpec(Exception):
    """A claim succeeded but its response is not a usable job spec."""

    def __init__(self, message: str, lease: str | None):
        self.lease = lease
        super().__init__(message)


@dataclass(frozen=True)
class JobSpec:
    """The rendered job as returned by a successful claim.

    ``timeout_s`` null or non-positive means no agent-side timeout (the control plane's sweeper
    still enforces its own). ``mask`` is an optional list of secret values to redact from
    anything reported back. ``output_limit_bytes`` caps the live output streamed for the job
    (default 10 MiB); ``network_allow`` lists CIDRs and host names that outbound requests
    (``http``, ``notify``) may reach although they are private (default: none).
    """

    job_id: str
    lease: str
    action: str
    execution_id: str = ""
    node_id: str = ""
    attempt: int = 1
    workflow: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    timeout_s: float | None = None
    env: dict[str, str] = field(default_factory=dict)
    mask: tuple[str, ...] = ()
    output_limit_bytes: int = DEFAULT_OUTPUT_LIMIT
    network_allow: tuple[str, ...] = ()

    @classmethod
    def from_claim(cls, job_id: str, data: Any) -> JobSpec:
        """Validate a claim response; ``job_id`` is the id that was claimed, not the body's."""
        lease = data.get("lease") if isinstance(data, dict) else None
        lease = lease if isinstance(lease, str) and lease else None
        try:
            if not isinstance(data, dict):
                raise TypeError("claim response is not a JSON object")
            if lease is None:
                raise ValueError("claim response has no lease")
            if _canonical_id(data.get("job_id", job_id)) != _canonical_id(job_id):
                raise ValueError(f"claim response is for job {data.get('job_id')!r}")
            params = data.get("params") or {}
            env = data.get("env") or {}
            if not isinstance(params, dict) or not isinstance(env, dict):
                raise TypeError("params and env must be JSON objects")
            timeout = float(data.get("timeout_s") or 0)
            mask = data.get("mask") or ()
            network_allow = data.get("network_allow") or ()
            if isinstance(network_allow, str) or not isinstance(network_allow, list | tuple):
                raise TypeError("network_allow must be a list of strings")
            limit = data.get("output_limit_bytes")
            limit = DEFAULT_OUTPUT_LIMIT if limit is None else int(limit)
            if limit < 0:
                raise ValueError("output_limit_bytes must not be negative")
            return cls(
                job_id=job_id,
                lease=lease,
                action=str(data.get("action") or ""),
                execution_id=str(data.get("execution_id") or ""),
                node_id=str(data.get("node_id") or ""),
                attempt=int(data.get("attempt") or 1),
                workflow=str(data.get("workflow") or ""),
                params=params,
                timeout_s=timeout if timeout > 0 else None,
                env={str(key): str(value) for key, value in env.items()},
                mask=tuple(str(value) for value in mask if value),
                output_limit_bytes=limit,
                network_allow=tuple(str(entry) for entry in network_allow),
            )
        except (TypeError, ValueError) as exc:
            raise InvalidJobSpec(str(exc), lease) from exc


@dataclass(frozen=True)
class CompleteReply:
    """The answer to a final report: whether it was accepted and, when the agent offered its
    slot (``accept_next``), the next job already claimed for it (or why that one is unusable).
    Truthy exactly when the report was accepted."""

    accepted: bool
    next: JobSpec | None = None
    next_error: InvalidJobSpec | None = None
    next_job_id: str = ""

    def __bool__(self) -> bool:
        return self.accepted

    @classmethod
    def from_response(cls, response: httpx.Response) -> CompleteReply:
        try:
            body = response.json()
        except ValueError:
            body = None
        return cls.from_body(body)

    @classmethod
    def from_body(cls, body: Any) -> CompleteReply:
        """The reply to an accepted report, from its JSON answer."""
        data = body.get("next") if isinstance(body, dict) else None
        if not data:
            return cls(True)
        job_id = data.get("job_id") if isinstance(data, dict) else None
        try:
            return cls(True, JobSpec.from_claim(str(job_id or ""), data))
        except InvalidJobSpec as exc:
            return cls(True, next_error=exc, next_job_id=str(job_id or ""))


@dataclass(frozen=True)
class BatchedReport:
    """A final report waiting to go out with others (see ``AgentClient.complete_many``)."""

    job_id: str
    report: Mapping[str, Any]
    accept_next: bool = False


def _canonical_id(value: Any) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return str(value)


def retry_after_seconds(response: httpx.Response | None, cap: float = 30.0) -> float:
    """The delay a 503/429 asks for in ``Retry-After`` (seconds form), 0 if absent or unusable."""
    if response is None or response.status_code not in (429, 503):
        return 0.0
    try:
        return min(max(float(response.headers.get("Retry-After", "")), 0.0), cap)
    except ValueError:
        return 0.0


def backoff_delays(budget: float) -> Iterator[float]:
    """Yield sleeps of 0.2 s doubling up to 5 s until ``budget`` seconds have elapsed."""
    deadline = time.monotonic() + budget
    delay = BACKOFF_INITIAL
    while (remaining := deadline - time.monotonic()) > 0:
        yield min(delay, remaining)
        delay = min(delay * 2, BACKOFF_CAP)


class AgentClient:
    """One thread-safe connection pool per process, authenticated with the agent token."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        version: str = __version__,
        claim_retry_budget: float = CLAIM_RETRY_BUDGET,
        report_retry_budget: float = REPORT_RETRY_BUDGET,
        transport: httpx.BaseTransport | None = None,
    ):
        self.version = version
        self.claim_retry_budget = claim_retry_budget
        self.report_retry_budget = report_retry_budget
        self.batch_reports_supported = True
        self._http = httpx.Client(
            base_url=url.rstrip("/") + API_PREFIX,
            headers={
                "Authorization": f"Bearer {token}",
                "User-Agent": f"switchyard-agent/{version}",
            },
            timeout=DEFAULT_TIMEOUT,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def claim(self, job_id: str) -> JobSpec | None:
        """Claim a job; ``None`` means someone else owns it (or it is gone) and it must not run.

        Raises ``ClaimUnavailable`` when the control plane cannot be reached in time, so that the
        caller can hand the message back to the broker instead of losing it.
        """
        delays = backoff_delays(self.claim_retry_budget)
        while True:
            response = None
            try:
                response = self._http.post(f"/jobs/{job_id}/claim", json={})
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    try:
                        body = response.json()
                    except ValueError:
                        body = None
                    return JobSpec.from_claim(job_id, body)
                if response.status_code in (404, 409):
                    logger.info(
                        "job %s not claimable (HTTP %s: %s); dropping the message",
                        job_id,
                        response.status_code,
                        ApiError.from_response(response).detail,
                    )
                    return None
                if response.status_code == 401:
                    logger.error("claim of job %s refused: agent token rejected (401)", job_id)
                problem = str(ApiError.from_response(response))
            delay = next(delays, None)
            if delay is None:
                raise ClaimUnavailable(f"could not claim job {job_id}: {problem}")
            delay = max(delay, retry_after_seconds(response))
            logger.warning("claim of job %s failed (%s); retrying in %.1fs", job_id, problem, delay)
            time.sleep(delay)

    def complete(self, job_id: str, report: Mapping[str, Any]) -> bool:
        """Report a job's result; retried on 5xx/network errors because the server is idempotent.

        Returns ``True`` once accepted, ``False`` if the server refused it for good (409 for a
        stale lease, other 4xx) or the retry budget ran out.
        """
        return self._send_report(job_id, dict(report)) is not None

    def complete_and_take_next(self, job_id: str, report: Mapping[str, Any]) -> CompleteReply:
        """``complete``, offering this job's slot: the reply may carry the next job, already
        claimed for this agent, which saves a broker round trip and a claim."""
        response = self._send_report(job_id, dict(report) | {"accept_next": True})
        return CompleteReply(False) if response is None else CompleteReply.from_response(response)

    def _send_report(self, job_id: str, body: dict[str, Any]) -> httpx.Response | None:
        """POST a final report until accepted (the response) or refused for good (``None``)."""
        response = self._post_until_answered(
            f"/jobs/{job_id}/complete", body, what=f"the report for job {job_id}"
        )
        if response is None or 200 <= response.status_code < 300:
            return response
        if response.status_code == 409:
            logger.warning(
                "report for job %s refused: lease is stale or superseded (%s)",
                job_id,
                ApiError.from_response(response).detail,
            )
        else:
            logger.error(
                "report for job %s rejected, not retrying: %s",
                job_id,
                ApiError.from_response(response),
            )
        return None

    def complete_many(self, reports: list[BatchedReport]) -> list[CompleteReply]:
        """Send several final reports in one request (``POST /reports``), retried as a whole on
        5xx/network errors (the server applies each report idempotently). Returns one reply per
        report, in order; a report refused for good (404/409) gets a falsy reply.

        When the batch itself is rejected (a server without ``/reports``, or a 400), each report
        is sent on its own instead, so a bad one cannot take the others down with it.
        """
        body = {
            "reports": [
                dict(r.report) | {"job_id": r.job_id, "accept_next": r.accept_next} for r in reports
            ]
        }
        if not self.batch_reports_supported:
            return self._complete_each(reports)
        response = self._post_until_answered("/reports", body, what=f"{len(reports)} reports")
        if response is None:
            return [CompleteReply(False) for _ in reports]
        if response.status_code in (404, 405):
            logger.warning("the control plane has no batch report endpoint; reporting one by one")
            self.batch_reports_supported = False
            return self._complete_each(reports)
        if not 200 <= response.status_code < 300:
            logger.error(
                "batch of reports rejected (%s); reporting one by one",
                ApiError.from_response(response),
            )
            return self._complete_each(reports)
        try:
            results = response.json()["results"]
            if not isinstance(results, list) or len(results) != len(reports):
                raise ValueError("results do not match the reports")
        except (ValueError, KeyError, TypeError) as exc:
            logger.error("unusable answer to a batch of reports (%s); reporting one by one", exc)
            return self._complete_each(reports)
        replies = []
        for sent, result in zip(reports, results, strict=True):
            error = result.get("error") if isinstance(result, dict) else None
            if isinstance(error, dict) or not isinstance(result, dict):
                logger.warning(
                    "report for job %s refused: %s",
                    sent.job_id,
                    error.get("detail") if isinstance(error, dict) else "malformed result",
                )
                replies.append(CompleteReply(False))
            else:
                replies.append(CompleteReply.from_body(result))
        return replies

    def _complete_each(self, reports: list[BatchedReport]) -> list[CompleteReply]:
        replies = []
        for sent in reports:
            if sent.accept_next:
                replies.append(self.complete_and_take_next(sent.job_id, sent.report))
            else:
                replies.append(CompleteReply(self.complete(sent.job_id, sent.report)))
        return replies

    def _post_until_answered(
        self, path: str, body: dict[str, Any], *, what: str
    ) -> httpx.Response | None:
        """POST until the server answers with anything but a retryable status (the response),
        or the report retry budget runs out (``None``)."""
        delays = backoff_delays(self.report_retry_budget)
        while True:
            response = None
            try:
                response = self._http.post(path, json=body)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if not is_retryable_status(response.status_code):
                    return response
                problem = str(ApiError.from_response(response))
            delay = next(delays, None)
            if delay is None:
                logger.error("giving up sending %s: %s", what, problem)
                return None
            delay = max(delay, retry_after_seconds(response))
            logger.warning("sending %s failed (%s); retrying in %.1fs", what, problem, delay)
            time.sleep(delay)

    def post_output(self, job_id: str, lease: str, chunks: list[dict[str, Any]]) -> OutputReply:
        """Send one batch of live output, once; the streamer owns retries and buffering.

        Raises ``LeaseLost`` on 409, ``ApiError`` on other error statuses and
        ``httpx.HTTPError`` when the control plane cannot be reached.
        """
        response = self._http.post(
            f"/jobs/{job_id}/output",
            json={"lease": lease, "chunks": chunks},
            timeout=OUTPUT_TIMEOUT,
        )
        if response.status_code == 409:
            raise LeaseLost(ApiError.from_response(response).detail)
        if not 200 <= response.status_code < 300:
            raise ApiError.from_response(response)
        try:
            body = response.json()
        except ValueError:
            body = None
        body = body if isinstance(body, dict) else {}
        return OutputReply(
            accepted=int(body.get("accepted") or 0),
            last_seq=int(body.get("last_seq") or 0),
            cancel=body.get("cancel") is True,
        )

    def heartbeat(
        self, running_jobs: list[str], load: Mapping[str, int], *, timeout: float | None = None
    ) -> list[str]:
        """Send one heartbeat; returns the ids of jobs the control plane wants killed.

        ``timeout`` bounds the whole request (the heartbeat loop passes its interval): a
        heartbeat stuck on a black-holed connection for the default 30 s would outlive the
        lease, and every job claimed meanwhile would be failed as "agent lost".
        Raises ``ApiError`` or ``httpx.HTTPError``; the heartbeat loop decides what to do.
        """
        response = self._http.post(
            "/heartbeat",
            json={"running_jobs": running_jobs, "version": self.version, "load": dict(load)},
            timeout=(
                httpx.Timeout(timeout, connect=min(timeout, 5.0))
                if timeout
                else httpx.USE_CLIENT_DEFAULT
            ),
        )
        if response.status_code != 200:
            raise ApiError.from_response(response)
        body = response.json()
        cancel = body.get("cancel") if isinstance(body, dict) else None
        return [str(job_id) for job_id in cancel or []]


def register(
    url: str,
    *,
    enrollment_token: str,
    name: str,
    pools: list[str],
    labels: dict[str, str],
    hostname: str,
    version: str = __version__,
    transport: httpx.BaseTransport | None = None,
) -> dict[str, Any]:
    """Trade an enrollment token for an agent token; raises ``ApiError`` on refusal."""
    body = {
        "enrollment_token": enrollment_token,
        "name": name,
        "pools": pools,
        "labels": labels,
        "version": version,
        "hostname": hostname,
    }
    with httpx.Client(
        timeout=DEFAULT_TIMEOUT,
        transport=transport,
        headers={"User-Agent": f"switchyard-agent/{version}"},
    ) as http:
        response = http.post(url.rstrip("/") + API_PREFIX + "/register", json=body)
    if response.status_code not in (200, 201):
        raise ApiError.from_response(response)
    data = response.json()
    if not isinstance(data, dict) or not data.get("token"):
        raise ApiError(response.status_code, "registration response has no token")
    return data
