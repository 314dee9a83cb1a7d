"""Drive executions in-process: claim and report jobs as an agent would."""

from __future__ import annotations

from executions.jobs import JobReport, claim_job
from executions.models import Job
from executions.report_batch import report_job_result


def pending_job(execution, node_id: str) -> Job:
    return Job.objects.filter(
        execution=execution, node_id=node_id, status__in=["pending", "dispatched"]
    ).latest("attempt")


def finish(agent, execution, node_id: str, status: str = "completed", **fields) -> Job:
    job = claim_job(agent, pending_job(execution, node_id).pk)
    report_job_result(agent, job.pk, JobReport(lease=job.lease, status=status, **fields))
    job.refresh_from_db()
    execution.refresh_from_db()
    return job
