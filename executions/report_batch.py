"""Several final reports in one call: one transaction, and one lock and one advance per execution.

An agent whose slots finish together sends their reports in one request (see
`agents.agent.reporting`). Each report keeps the semantics of a single one (fencing by lease,
idempotent repeats, `accept_next` hand-over with a lease derived from the report's), but the
reports of one execution are applied together: its row is locked once, the graph advances once,
and the slots offered get the jobs that advance made ready. The executions of a batch share one
transaction: their rows are locked in one statement, and the jobs' results, the runs' advanced
states, the jobs they made ready and their log events are written in one statement each. Slots
still free pull the oldest due jobs of the agent's queues in one statement of the same
transaction (their claim events go in with the batch's). Under a fan-out
this is what keeps N reports from queueing on the same execution lock; under a burst of short
runs, what keeps each report from costing a transaction. A single report
(`…/jobs/{id}/complete`) is a batch of one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from executions.advancing import (
    DeferredWrites,
    ExecutionConflict,
    Handover,
    record_claim,
    settle_jobs,
)
from executions.hot_path import (
    claimed_jobs,
    lock_executions_of_jobs,
    lock_jobs,
    pull_due_jobs,
    save_results,
)
from executions.jobs import (
    RESULT_STATUSES,
    JobNotFound,
    JobReport,
    ReportOutcome,
    fence_report,
    handover_lease,
    prepare_claim,
    record_result,
    reported_status,
)
from executions.models import Execution, Job, JobStatus
from executions.recorder import EventRecorder


@dataclass
class BatchedReport:
    job_id: uuid.UUID
    report: JobReport
    accept_next: bool = False


Outcome = ReportOutcome | JobNotFound | ExecutionConflict


def report_job_result(agent, job_id, report: JobReport) -> tuple[Job, bool]:
    """Apply an agent's final report. Returns (job, applied); a repeat of an applied report is a
    no-op, a report from a stale or superseded lease raises ExecutionConflict (fencing)."""
    outcome = apply_one_report(agent, job_id, report, accept_next=False)
    return outcome.job, outcome.applied


def report_and_take_next(agent, job_id, report: JobReport) -> ReportOutcome:
    """Apply a report and give the reporting agent's freed slot its next job at once.

    A job this report made ready is claimed for the agent inside the report's transaction (it is
    never published to the broker); otherwise the oldest due job of its queues is pulled. This
    saves the broker round trip and a claim request per step of a chain. The next job's lease is
    derived from the report's, so a repeated report (its response got lost) returns the same
    job again instead of stranding it; anything still stranded is failed as agent lost by the
    heartbeat (see `agents.services.fail_jobs_the_agent_forgot`)."""
    return apply_one_report(agent, job_id, report, accept_next=True)


def apply_one_report(agent, job_id, report: JobReport, *, accept_next: bool) -> ReportOutcome:
    [outcome] = apply_report_batch(agent, [BatchedReport(job_id, report, accept_next)])
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def apply_report_batch(agent, entries: list[BatchedReport]) -> list[Outcome]:
    """Apply `entries` in order of execution; returns one outcome per entry (in the order
    given): a `ReportOutcome` (with `next_job` for an entry that offered its slot and got a
    job), or the JobNotFound / ExecutionConflict a single report would have raised."""
    for entry in entries:
        if entry.report.status not in RESULT_STATUSES:
            raise ValueError(entry.report.status)
    outcomes: list[Outcome | None] = [None] * len(entries)
    apply_reports_of_executions(agent, entries, outcomes)
    finish_handovers(agent, entries, outcomes)
    return outcomes  # type: ignore[return-value]


def apply_reports_of_executions(
    agent, entries: list[BatchedReport], outcomes: list[Outcome | None]
) -> None:
    """The reports of several executions in one transaction: their rows locked in one statement
    (in id order, so two batches sharing executions queue instead of deadlocking), the jobs
    locked in one, then each graph advanced once; the results, advanced states, new jobs and
    log events of them all are written in one statement each. Offered slots that no advance
    handed a job pull the oldest due ones in the same transaction. A report whose job is unknown
    (or was deleted with its run) gets `JobNotFound`."""
    job_ids = {entry.job_id for entry in entries}
    with transaction.atomic():
        executions = lock_executions_of_jobs(job_ids)
        jobs = lock_jobs(job_ids) if executions else {}
        by_execution: dict[uuid.UUID, list[int]] = {}
        for index, entry in enumerate(entries):
            job = jobs.get(entry.job_id)
            if job is None or job.execution_id not in executions:
                outcomes[index] = JobNotFound(entry.job_id)
            else:
                by_execution.setdefault(job.execution_id, []).append(index)
        writes = DeferredWrites()
        settling: list[tuple[Execution, EventRecorder, list[Job], dict[int, Handover]]] = []
        for execution_id, indexes in by_execution.items():
            execution = executions[execution_id]
            recorder = writes.recorder(execution.pk)
            applied, offers = record_reports(
                agent, execution, jobs, entries, indexes, outcomes, recorder
            )
            if applied:
                settling.append((execution, recorder, applied, offers))
        if not settling:
            return
        save_results([job for _, _, applied, _ in settling for job in applied])
        free: dict[int, uuid.UUID] = {}
        for execution, recorder, applied, offers in settling:
            handed = settle_jobs(
                execution, applied, recorder, handoffs=offers.values(), writes=writes
            )
            for index, offer in offers.items():
                job = handed.get(offer.lease)
                if job is None:
                    free[index] = offer.lease
                else:
                    job.execution = execution
                    outcomes[index].next_job = job  # type: ignore[union-attr]
        writes.write_rows()
        if free:
            pulled = pull_jobs_for_free_slots(agent, list(free.values()), writes)
            for index, lease in free.items():
                outcomes[index].next_job = pulled.get(lease)  # type: ignore[union-attr]
        writes.write_events()


def record_reports(
    agent,
    execution: Execution,
    jobs: dict[uuid.UUID, Job],
    entries: list[BatchedReport],
    indexes: list[int],
    outcomes: list[Outcome | None],
    recorder: EventRecorder,
) -> tuple[list[Job], dict[int, Handover]]:
    """Fence and record the reports of one locked execution (their jobs locked, in `jobs`);
    returns the jobs whose reports applied and the slots offered for them (by entry index)."""
    applied: dict[uuid.UUID, Job] = {}
    offers: dict[int, Handover] = {}
    for index in indexes:
        entry = entries[index]
        job = jobs[entry.job_id]
        status = reported_status(job, entry.report)
        try:
            fresh = fence_report(agent, job, entry.report, status)
        except ExecutionConflict as error:
            outcomes[index] = error
            continue
        outcomes[index] = ReportOutcome(job, fresh)
        if not fresh:
            continue
        record_result(execution, job, entry.report, status, recorder)
        applied[job.pk] = job
        if entry.accept_next:
            offers[index] = Handover(agent, handover_lease(entry.report.lease))
    return list(applied.values()), offers


def finish_handovers(agent, entries: list[BatchedReport], outcomes: list) -> None:
    """A repeated report that offered its slot gets the job its first delivery got (same
    derived lease); then every job given out is prepared for its claim response."""
    repeated = [
        index
        for index, entry in enumerate(entries)
        if entry.accept_next
        and isinstance(outcomes[index], ReportOutcome)
        and not outcomes[index].applied
    ]
    if repeated:
        leases = [handover_lease(entries[i].report.lease) for i in repeated]
        handed = {
            job.lease: job
            for job in claimed_jobs().filter(
                agent=agent, status=JobStatus.RUNNING, lease__in=leases
            )
        }
        for index, lease in zip(repeated, leases, strict=True):
            outcomes[index].next_job = handed.get(lease)
    for outcome in outcomes:
        if isinstance(outcome, ReportOutcome) and outcome.next_job is not None:
            try:
                prepare_claim(outcome.next_job)
            except ExecutionConflict:
                outcome.next_job = None


def pull_jobs_for_free_slots(
    agent, leases: list[uuid.UUID], writes: DeferredWrites
) -> dict[uuid.UUID, Job]:
    """Inside the report batch's transaction, pull up to `len(leases)` of the oldest due jobs
    of the agent's queues (`pull_due_jobs`: locked rows are skipped, so concurrent pulls never
    wait on each other), one per lease; their claim events go into `writes`. Returns lease ->
    job. Their doorbells may still be in the broker; the claim makes those messages no-ops."""
    jobs = pull_due_jobs(agent, leases, timezone.now())
    recorders: dict[uuid.UUID, EventRecorder] = {}
    for job in jobs:
        if job.execution_id not in recorders:
            recorders[job.execution_id] = writes.recorder(job.execution_id)
        record_claim(recorders[job.execution_id], job, agent)
    return {job.lease: job for job in jobs}
