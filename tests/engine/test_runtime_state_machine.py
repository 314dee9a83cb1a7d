"""Stateful property test of the real runtime (engine + services + PostgreSQL): agents claim jobs
and report in any order, repeat their reports, report late (after the control plane failed the
job or the run was cancelled), and the control plane fails jobs on its own authority meanwhile.

Invariants after every step: a terminal execution or job never changes again, and no node has
more than one successful attempt."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from agents.services import register_agent
from executions.advancing import ExecutionConflict, cancel_execution, start_execution
from executions.jobs import JobReport, ReportOutcome, claim_job, fail_job
from executions.models import Execution, Job
from executions.report_batch import BatchedReport, apply_report_batch, report_job_result
from orchestrator.services import create_workflow
from tests.api.test_runtime_properties import definitions

TERMINAL_JOB = {"completed", "failed", "timeout", "cancelled"}
OUTCOMES = st.sampled_from(["completed", "failed", "timeout"])


class RuntimeMachine(RuleBasedStateMachine):
    leases = Bundle("leases")

    @initialize(definition=definitions())
    def start(self, definition: dict) -> None:
        self.agent, _ = register_agent(
            enrollment_token=None, name=f"sm-{uuid.uuid4().hex[:8]}", pools=["default"], labels={}
        )
        self.execution = start_execution(create_workflow(definition))
        self.terminal_execution: str | None = None
        self.terminal_jobs: dict[uuid.UUID, str] = {}

    def jobs(self, *statuses: str) -> list[Job]:
        queryset = Job.objects.filter(execution=self.execution).order_by("queued_at", "id")
        return list(queryset.filter(status__in=statuses) if statuses else queryset)

    @rule(target=leases, pick=st.integers(min_value=0, max_value=20))
    def claim(self, pick: int):
        waiting = self.jobs("pending", "dispatched")
        if not waiting:
            return (None, None)
        job = waiting[pick % len(waiting)]
        try:
            claimed = claim_job(self.agent, job.pk)
        except ExecutionConflict:
            assert Job.objects.get(pk=job.pk).status in TERMINAL_JOB
            return (None, None)
        return (claimed.pk, claimed.lease)

    @rule(target=leases, pick=st.integers(min_value=0, max_value=20))
    def claim_twice(self, pick: int):
        """A redelivered broker message: the second claim of the same job must lose."""
        held = self.claim(pick)
        if held[0] is not None:
            with pytest.raises(ExecutionConflict):
                claim_job(self.agent, held[0])
        return held

    @rule(held=leases, outcome=OUTCOMES)
    def report(self, held, outcome: str) -> None:
        """Any report, in any order, possibly repeated or late: applied at most once."""
        job_id, lease = held
        if job_id is None:
            return
        before = Job.objects.get(pk=job_id).status
        try:
            _, applied = report_job_result(
                self.agent, job_id, JobReport(lease=lease, status=outcome, exit_code=0)
            )
        except ExecutionConflict:
            applied = False
        if before in TERMINAL_JOB:
            assert not applied

    @rule(
        target=leases,
        batch=st.lists(st.tuples(leases, OUTCOMES, st.booleans()), min_size=1, max_size=4),
    )
    def report_batch(self, batch):
        """Reports sent together (as an agent's group commit does), repeats and stale ones
        included, each possibly offering its slot: each applies at most once, and every job
        handed over or pulled is running under the lease it was given."""
        entries, before = [], {}
        for (job_id, lease), outcome, accept_next in batch:
            if job_id is not None:
                before[job_id] = Job.objects.get(pk=job_id).status
                report = JobReport(lease=lease, status=outcome, exit_code=0)
                entries.append(BatchedReport(job_id, report, accept_next))
        if not entries:
            return (None, None)
        outcomes = apply_report_batch(self.agent, entries)
        taken = (None, None)
        for entry, outcome in zip(entries, outcomes, strict=True):
            if before[entry.job_id] in TERMINAL_JOB:
                assert not (isinstance(outcome, ReportOutcome) and outcome.applied)
            if isinstance(outcome, ReportOutcome) and outcome.next_job is not None:
                job = Job.objects.get(pk=outcome.next_job.pk)
                assert job.status == "running" and job.lease == outcome.next_job.lease
                taken = (job.pk, job.lease)
        return taken

    @rule(held=leases, outcome=OUTCOMES)
    def report_with_forged_lease(self, held, outcome: str) -> None:
        job_id, _ = held
        if job_id is None:
            return
        with pytest.raises(ExecutionConflict):
            report_job_result(self.agent, job_id, JobReport(lease=uuid.uuid4(), status=outcome))

    @rule(held=leases)
    def lease_expires(self, held) -> None:
        """The control plane fails the job (agent lost, deadline); the agent's report comes late."""
        if held[0] is not None:
            fail_job(held[0], "agent lost")

    @rule()
    def cancel(self) -> None:
        try:
            cancel_execution(self.execution.pk, reason="state machine")
        except ExecutionConflict:
            assert Execution.objects.get(pk=self.execution.pk).is_terminal

    @invariant()
    def terminal_states_never_change(self) -> None:
        if not hasattr(self, "execution"):
            return
        status = Execution.objects.get(pk=self.execution.pk).status
        if self.terminal_execution is not None:
            assert status == self.terminal_execution
        elif status in ("completed", "failed", "cancelled", "timed_out"):
            self.terminal_execution = status
        for job in self.jobs():
            if job.pk in self.terminal_jobs:
                assert job.status == self.terminal_jobs[job.pk], job.node_id
            elif job.status in TERMINAL_JOB:
                self.terminal_jobs[job.pk] = job.status

    @invariant()
    def at_most_one_successful_attempt_per_node(self) -> None:
        if not hasattr(self, "execution"):
            return
        successes = [job.node_id for job in self.jobs("completed")]
        assert len(successes) == len(set(successes))


@pytest.mark.django_db
def test_duplicated_reordered_and_late_reports_never_break_the_runtime():
    run_state_machine_as_test(
        RuntimeMachine,
        settings=settings(
            max_examples=30,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
