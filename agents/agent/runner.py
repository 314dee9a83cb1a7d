"""Job execution: environment, action dispatch, outputs, and the claim → run → report flow."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents.agent.actions import (
    ACTIONS,
    KILLED,
    NULL_SINK,
    ActionResult,
    JobContext,
    OutputSink,
    kill_process_group,
)
from agents.agent.client import AgentClient, CompleteReply, InvalidJobSpec, JobSpec
from agents.agent.masking import mask_secrets
from agents.agent.reporting import ReportBatcher
from agents.agent.streaming import OutputStreamer
from agents.agent.workspace import Workspace

logger = logging.getLogger("switchyard.agent")

SCRUBBED_ENV = frozenset(
    {"SWITCHYARD_AGENT_TOKEN", "SWITCHYARD_ENROLLMENT_TOKEN", "SWITCHYARD_BROKER_URL"}
)
OUTPUT_FILE_LIMIT = 1024 * 1024
# SIGTERM, then SIGKILL after this grace: short enough that a kill from the control plane is
# done within the 2 s that DESIGN §5 promises.
KILL_GRACE_S = 1.0

__all__ = ["Runner", "build_environment", "execute_job", "mask_secrets", "parse_output_file"]


def build_environment(
    spec: JobSpec, output_path: Path, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The child environment: the agent's own (minus its credentials), then the spec's ``env``,
    then ``params.env``, then the ``SWITCHYARD_*`` job variables, later ones winning.

    Raises ``ValueError`` for a malformed ``params.env``.
    """
    inherited = os.environ if base is None else base
    env = {key: value for key, value in inherited.items() if key not in SCRUBBED_ENV}
    env.update(spec.env)
    env.update(_string_mapping(spec.params.get("env"), "params.env"))
    env.update(
        SWITCHYARD_EXECUTION_ID=spec.execution_id,
        SWITCHYARD_JOB_ID=spec.job_id,
        SWITCHYARD_NODE_ID=spec.node_id,
        SWITCHYARD_ATTEMPT=str(spec.attempt),
        SWITCHYARD_WORKFLOW=spec.workflow,
        SWITCHYARD_OUTPUT=str(output_path),
    )
    return env


def _string_mapping(value: Any, label: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{label} must be an object of strings")
    result: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise ValueError(f"{label}: invalid variable name {key!r}")
        if isinstance(item, bool):
            result[key] = "true" if item else "false"
        elif isinstance(item, str | int | float):
            result[key] = str(item)
        else:
            raise ValueError(f"{label}.{key} must be a string")
    return result


def parse_output_file(text: str) -> dict[str, str]:
    """Parse ``$SWITCHYARD_OUTPUT``: ``key=value`` lines and ``key<<DELIM`` … ``DELIM`` blocks."""
    outputs: dict[str, str] = {}
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line.strip():
            continue
        heredoc = line.find("<<")
        equals = line.find("=")
        if heredoc > 0 and (equals < 0 or heredoc < equals):
            key, delimiter = line[:heredoc].strip(), line[heredoc + 2 :].strip()
            body: list[str] = []
            while index < len(lines) and lines[index] != delimiter:
                body.append(lines[index])
                index += 1
            if index >= len(lines):
                logger.warning("output %r: missing closing delimiter %r", key, delimiter)
            index += 1
            outputs[key] = "\n".join(body)
        elif equals > 0:
            outputs[line[:equals].strip()] = line[equals + 1 :]
        else:
            logger.warning("ignoring malformed output line %r", line[:100])
    return outputs


def read_output_file(path: Path) -> dict[str, str]:
    try:
        with path.open("rb") as handle:
            data = handle.read(OUTPUT_FILE_LIMIT + 1)
    except FileNotFoundError:
        return {}
    if len(data) > OUTPUT_FILE_LIMIT:
        logger.warning("%s exceeds %d bytes; ignoring the rest", path, OUTPUT_FILE_LIMIT)
        data = data[:OUTPUT_FILE_LIMIT]
    return parse_output_file(data.decode("utf-8", errors="replace"))


def _parse_json_stdout(result: ActionResult) -> None:
    """``parse: json``: the last non-empty stdout line becomes ``outputs["json"]``."""
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    try:
        if not lines:
            raise ValueError("stdout is empty")
        result.outputs["json"] = json.loads(lines[-1])
    except ValueError as exc:
        if result.status == "completed":
            result.status = "failed"
            result.error = f"parse: json: the last line of stdout is not JSON ({exc})"


@dataclass
class _ActiveJob:
    job_id: str
    started: float = field(default_factory=time.monotonic)
    cancelled: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str = ""
    process: subprocess.Popen[bytes] | None = None
    cancel_callbacks: list[Callable[[], None]] = field(default_factory=list)


class Runner:
    """Runs claimed jobs and keeps the registry of in-flight jobs for heartbeats and kills."""

    HANDED_OVER_MEMORY = 10_000

    def __init__(
        self,
        slots: int = 4,
        *,
        kill_grace: float = KILL_GRACE_S,
        work_root: str | None = None,
    ):
        """`work_root`: where this agent's directory for its jobs' private directories goes
        (default: `default_work_root()`); directories dead agents left there are removed."""
        self.slots = slots
        self.kill_grace = kill_grace
        self.workspace = Workspace(work_root)
        self._lock = threading.Lock()
        self._jobs: dict[str, _ActiveJob] = {}
        self._handed_over: OrderedDict[str, None] = OrderedDict()
        self.draining = threading.Event()

    def close(self) -> None:
        """Remove this agent's job directory (call once its jobs are done)."""
        self.workspace.close()

    def accepts_handover(self) -> bool:
        """Whether a finishing job may take its next job with its report (not while stopping)."""
        return not self.draining.is_set()

    def remember_handover(self, job_id: str) -> None:
        """A job received with a report: its broker doorbell, if any, must be skipped."""
        with self._lock:
            self._handed_over[job_id] = None
            while len(self._handed_over) > self.HANDED_OVER_MEMORY:
                self._handed_over.popitem(last=False)

    def was_handed_over(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._handed_over

    def running_jobs(self) -> list[str]:
        with self._lock:
            return list(self._jobs)

    def started_within(self, seconds: float) -> set[str]:
        """Jobs in flight that started less than `seconds` ago: the ones a finishing slot's
        report may wait for (a job running for longer is not about to finish with it)."""
        since = time.monotonic() - seconds
        with self._lock:
            return {job_id for job_id, job in self._jobs.items() if job.started > since}

    def load(self) -> dict[str, int]:
        with self._lock:
            return {"slots": self.slots, "busy": len(self._jobs)}

    @contextmanager
    def track(self, job_id: str) -> Iterator[_ActiveJob]:
        """Register a job as in flight (reported by heartbeats, killable) for the block."""
        with self._lock:
            job = self._jobs.get(job_id)
            owner = job is None
            if job is None:
                job = self._jobs[job_id] = _ActiveJob(job_id)
        try:
            yield job
        finally:
            if owner:
                with self._lock:
                    self._jobs.pop(job_id, None)

    def cancel(self, job_id: str, reason: str = KILLED) -> bool:
        """Kill a job's process group in the background; unknown jobs are ignored."""
        return self._cancel(job_id, reason) is not None

    def cancel_all(self, reason: str, *, wait: bool = False) -> list[str]:
        """Kill every in-flight job; with ``wait``, return only once their groups are dead."""
        cancelled = {job_id: self._cancel(job_id, reason) for job_id in self.running_jobs()}
        if wait:
            for killer in cancelled.values():
                if isinstance(killer, threading.Thread):
                    killer.join()
        return [job_id for job_id, killer in cancelled.items() if killer is not None]

    def _cancel(self, job_id: str, reason: str) -> threading.Thread | bool | None:
        """``None`` if there was nothing to cancel, else the killer thread (or ``True``)."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.cancelled.is_set():
                return None
            job.cancel_reason = reason
            job.cancelled.set()
            process = job.process
            callbacks = list(job.cancel_callbacks)
        logger.warning("killing job %s: %s", job_id, reason)
        for callback in callbacks:
            try:
                callback()
            except Exception:
                logger.exception("cancel callback of job %s failed", job_id)
        return self._kill_in_background(process) if process is not None else True

    def _on_cancel(self, job: _ActiveJob, callback: Callable[[], None]) -> Callable[[], None]:
        """Run ``callback`` when ``job`` is cancelled (now, if it already is)."""
        with self._lock:
            cancelled = job.cancelled.is_set()
            if not cancelled:
                job.cancel_callbacks.append(callback)
        if cancelled:
            callback()
            return lambda: None

        def unregister() -> None:
            with self._lock:
                if callback in job.cancel_callbacks:
                    job.cancel_callbacks.remove(callback)

        return unregister

    def _attach(self, job: _ActiveJob, process: subprocess.Popen[bytes]) -> None:
        with self._lock:
            job.process = process
            cancelled = job.cancelled.is_set()
        if cancelled:
            self._kill_in_background(process)

    def _kill_in_background(self, process: subprocess.Popen[bytes]) -> threading.Thread:
        killer = threading.Thread(
            target=kill_process_group,
            args=(process, self.kill_grace),
            name=f"switchyard-kill-{process.pid}",
            daemon=True,
        )
        killer.start()
        return killer

    def run(self, spec: JobSpec, output: OutputSink = NULL_SINK) -> ActionResult:
        """Run a claimed job to completion; never raises, every problem becomes a result.

        ``output`` receives the raw stdout/stderr as it is produced (the live stream).
        """
        with self.track(spec.job_id) as job:
            started = time.monotonic()
            result = self._run(spec, job, output)
            if result.duration_ms is None:
                result.duration_ms = int((time.monotonic() - started) * 1000)
        if spec.mask:
            result.stdout = mask_secrets(result.stdout, spec.mask)
            result.stderr = mask_secrets(result.stderr, spec.mask)
            result.outputs = mask_secrets(result.outputs, spec.mask)
            result.error = mask_secrets(result.error, spec.mask)
            result.http = mask_secrets(result.http, spec.mask)
        return result

    def _run(self, spec: JobSpec, job: _ActiveJob, output: OutputSink) -> ActionResult:
        action = ACTIONS.get(spec.action)
        if action is None:
            return ActionResult.failure(f"unknown action type '{spec.action}'")
        parse = spec.params.get("parse")
        if parse not in (None, "json"):
            return ActionResult.failure(f"params.parse must be 'json', not {parse!r}")
        with tempfile.TemporaryDirectory(
            prefix=f"job-{spec.job_id[:8]}-", dir=self.workspace.path, ignore_cleanup_errors=True
        ) as tmp:
            workdir = Path(tmp)
            output_path = workdir / "output"
            output_path.touch(mode=0o600)
            try:
                env = build_environment(spec, output_path)
            except ValueError as exc:
                return ActionResult.failure(str(exc))
            ctx = JobContext(
                job_id=spec.job_id,
                action=spec.action,
                params=spec.params,
                env=env,
                timeout_s=spec.timeout_s,
                workdir=workdir,
                output_path=output_path,
                execution_id=spec.execution_id,
                node_id=spec.node_id,
                attempt=spec.attempt,
                workflow=spec.workflow,
                cancelled=job.cancelled,
                process_started=lambda process: self._attach(job, process),
                output=output,
                network_allow=spec.network_allow,
                on_cancel=lambda callback: self._on_cancel(job, callback),
            )
            if job.cancelled.is_set():
                return ActionResult.failure(job.cancel_reason)
            try:
                result = action(ctx)
            except Exception as exc:
                logger.exception("action %r crashed on job %s", spec.action, spec.job_id)
                return ActionResult.failure(f"agent error in action '{spec.action}': {exc}")
            finally:
                with self._lock:
                    job.process = None
            result.outputs = {**result.outputs, **read_output_file(output_path)}
        if parse == "json" and result.http is None:  # http actions parse their body
            _parse_json_stdout(result)
        if job.cancelled.is_set() and result.status != "timeout":
            result.status, result.error = "failed", job.cancel_reason
        return result


def _now() -> str:
    return datetime.now(UTC).isoformat()


def execute_job(
    job_id: str, client: AgentClient, runner: Runner, reporter: ReportBatcher | None = None
) -> ActionResult | None:
    """Claim → run → report one job; the broker message contributes nothing but ``job_id``.

    Returns the result, or ``None`` when the job was not ours to run (409/404 on claim, or a
    message that does not carry a job id). ``ClaimUnavailable`` propagates so the caller can
    return the message to the broker.
    """
    try:
        job_id = str(uuid.UUID(str(job_id)))
    except ValueError:
        logger.warning("dropping message with an invalid job id %r", str(job_id)[:100])
        return None

    if runner.was_handed_over(job_id):
        logger.debug("job %s was handed over with a report already; skipping its doorbell", job_id)
        return None
    try:
        spec = client.claim(job_id)
    except InvalidJobSpec as exc:
        logger.error("job %s: unusable claim response: %s", job_id, exc)
        return _refuse_invalid_spec(job_id, exc, client)
    result = None
    while spec is not None:
        result, spec = _run_claimed(spec, client, runner, reporter)
    return result


def _refuse_invalid_spec(
    job_id: str, exc: InvalidJobSpec, client: AgentClient
) -> ActionResult | None:
    if exc.lease is None:
        return None
    now = _now()
    result = ActionResult.failure(f"invalid job spec: {exc}")
    client.complete(job_id, _report(exc.lease, result, now, now))
    return result


def _run_claimed(
    spec: JobSpec, client: AgentClient, runner: Runner, reporter: ReportBatcher | None
) -> tuple[ActionResult, JobSpec | None]:
    """Run one claimed job and report it (through `reporter`, with the reports of other slots
    finishing meanwhile, when given), offering the slot for the next job when allowed.
    Returns the result and the next job handed over with the report, if any."""
    job_id = spec.job_id
    logger.debug("running job %s (%s, attempt %s)", job_id, spec.action, spec.attempt)
    streamer = open_output_stream(spec, client, lambda reason: runner.cancel(job_id, reason))
    with runner.track(job_id):
        started_at = _now()
        try:
            result = runner.run(spec, streamer)
        finally:
            streamer.close()  # the report must follow the last live chunk
        finished_at = _now()
        logger.info(
            "job %s (%s, attempt %s) finished: %s %s",
            job_id,
            spec.action,
            spec.attempt,
            result.status,
            result.error or "",
        )
        report = _report(spec.lease, result, started_at, finished_at)
        if reporter is not None:
            reply = reporter.submit(
                job_id,
                report,
                accept_next=runner.accepts_handover(),
                execution_id=spec.execution_id,
            )
        elif runner.accepts_handover():
            reply = client.complete_and_take_next(job_id, report)
        else:
            reply = CompleteReply(client.complete(job_id, report))
    if reply.next_error is not None:
        logger.error("job handed over after %s is unusable: %s", job_id, reply.next_error)
        if reply.next_job_id:
            _refuse_invalid_spec(reply.next_job_id, reply.next_error, client)
    if reply.next is not None:
        runner.remember_handover(reply.next.job_id)
    return result, reply.next


def open_output_stream(
    spec: JobSpec, client: AgentClient, kill: Callable[[str], None]
) -> OutputStreamer:
    """Start the live output stream of a claimed job."""
    streamer = OutputStreamer(
        lambda chunks: client.post_output(spec.job_id, spec.lease, chunks),
        kill,
        secrets=spec.mask,
        limit=spec.output_limit_bytes,
        name=spec.job_id[:8],
    )
    streamer.start()
    return streamer


def _report(lease: str, result: ActionResult, started_at: str, finished_at: str) -> dict[str, Any]:
    return {"lease": lease, **asdict(result), "started_at": started_at, "finished_at": finished_at}
