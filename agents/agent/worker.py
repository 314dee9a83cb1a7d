"""The Celery side of the agent: the ``switchyard.run_job`` task, the worker and heartbeats."""

from __future__ import annotations

import logging
import socket
import threading
import time

import httpx
from celery import Celery
from celery.exceptions import Reject
from celery.signals import worker_shutting_down
from celery.worker.control import control_command

from agents.agent.actions import KILLED
from agents.agent.client import AgentClient, ApiError, ClaimUnavailable
from agents.agent.config import AgentConfig
from agents.agent.reporting import AWAIT_STARTED_WITHIN_S, ReportBatcher
from agents.agent.runner import Runner, execute_job

logger = logging.getLogger("switchyard.agent")

TASK_NAME = "switchyard.run_job"
DEFAULT_CONCURRENCY = 4
LOST_AFTER_INTERVALS = 3
QUIET_BELOW_DEBUG = ("httpx", "celery.worker.strategy", "celery.app.trace")


def create_app(
    config: AgentConfig,
    client: AgentClient,
    runner: Runner,
    *,
    concurrency: int,
    reporter: ReportBatcher | None = None,
) -> Celery:
    """A Celery app whose only task is the doorbell ``switchyard.run_job(job_id)``."""
    app = Celery("switchyard-agent", set_as_current=False)
    app.conf.update(
        broker_url=config.broker_url,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        result_backend=None,
        task_ignore_result=True,
        accept_content=["json"],
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        worker_pool="threads",
        worker_concurrency=concurrency,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )

    @app.task(name=TASK_NAME, shared=False, ignore_result=True, acks_late=True)
    def run_job(job_id: str) -> None:
        try:
            execute_job(job_id, client, runner, reporter)
        except ClaimUnavailable as exc:
            logger.error("%s; returning the message to the broker", exc)
            raise Reject(str(exc), requeue=True) from exc

    return app


current_heartbeat: Heartbeat | None = None


@control_command(name="switchyard_heartbeat_now")
def heartbeat_now(state) -> dict[str, str]:
    """Broker doorbell from the control plane: heartbeat at once. It carries no instruction; the
    heartbeat response says which jobs to kill, so a forged message can only cause a heartbeat."""
    if current_heartbeat is not None:
        current_heartbeat.wake()
    return {"ok": "heartbeat scheduled"}


class Heartbeat:
    """Posts a heartbeat every ``interval`` seconds and applies the ``cancel`` list it gets back.

    If no heartbeat has succeeded for ``LOST_AFTER_INTERVALS`` intervals the control plane
    considers this agent lost and may already retry its jobs elsewhere, so they are killed here.
    """

    def __init__(self, client: AgentClient, runner: Runner, interval: float):
        self.client = client
        self.runner = runner
        self.interval = interval
        self.last_success = time.monotonic()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="switchyard-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=self.interval + 5)

    def wake(self) -> None:
        """Heartbeat now instead of at the next interval (e.g. a kill is waiting for us)."""
        self._wake.set()

    def _loop(self) -> None:
        while True:
            try:
                self.beat()
            except Exception:
                logger.exception("heartbeat failed unexpectedly")
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return

    def beat(self) -> None:
        """Send one heartbeat now."""
        try:
            cancel = self.client.heartbeat(
                self.runner.running_jobs(), self.runner.load(), timeout=self.interval
            )
        except ApiError as exc:
            if exc.status in (401, 403):
                logger.critical(
                    "HEARTBEAT REJECTED (%s): the agent token is invalid or revoked; "
                    "re-register this agent",
                    exc,
                )
            else:
                logger.warning("heartbeat failed: %s", exc)
            self._check_lost()
            return
        except httpx.HTTPError as exc:
            logger.warning("heartbeat failed: %s: %s", type(exc).__name__, exc)
            self._check_lost()
            return
        self.last_success = time.monotonic()
        for job_id in cancel:
            self.runner.cancel(job_id, KILLED)

    def _check_lost(self) -> None:
        silent_for = time.monotonic() - self.last_success
        if silent_for >= LOST_AFTER_INTERVALS * self.interval:
            killed = self.runner.cancel_all(
                f"no successful heartbeat for {silent_for:.0f}s; the lease is presumed lost"
            )
            if killed:
                logger.error("lost contact with the control plane; killed jobs %s", killed)


def run_worker(
    config: AgentConfig, *, concurrency: int = DEFAULT_CONCURRENCY, loglevel: str = "INFO"
) -> int:
    """Run the Celery worker until SIGTERM/SIGINT (warm shutdown); returns the exit code."""
    client = AgentClient(config.url, config.token)
    runner = Runner(slots=concurrency)
    reporter = ReportBatcher(client, awaited=lambda: runner.started_within(AWAIT_STARTED_WITHIN_S))
    app = create_app(config, client, runner, concurrency=concurrency, reporter=reporter)
    heartbeat = Heartbeat(client, runner, config.heartbeat_interval)

    def stop_taking_handovers(**_: object) -> None:
        runner.draining.set()

    worker_shutting_down.connect(stop_taking_handovers, weak=False)
    global current_heartbeat
    current_heartbeat = heartbeat
    worker = app.Worker(
        hostname=f"{config.name}@{socket.gethostname()}",
        queues=config.queues,
        pool="threads",
        concurrency=concurrency,
        loglevel=loglevel,
        without_mingle=True,
        without_gossip=True,
    )
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # Per-request and per-doorbell lines; the job's own "finished" line says what happened.
        # Under a fan-out most doorbells are for jobs already handed over with a report, and
        # formatting their two lines each was a tenth of the agent's time.
        for name in QUIET_BELOW_DEBUG:
            logging.getLogger(name).setLevel(logging.WARNING)
    logger.info("agent %s consuming %s", config.name, ", ".join(config.queues))
    heartbeat.start()
    try:
        worker.start()
    finally:
        heartbeat.stop()
        abandoned = runner.cancel_all("agent shut down", wait=True)
        if abandoned:
            logger.warning("killed jobs still running at shutdown: %s", abandoned)
        runner.close()
        client.close()
    return worker.exitcode or 0
