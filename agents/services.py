"""Agent enrollment, authentication and heartbeats."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from agents.models import Agent, AgentPool, EnrollmentToken
from orchestrator.row_loading import ModelColumns
from orchestrator.tokens import hash_token, issue_token


class EnrollmentRefused(Exception):
    """The enrollment token is unknown, revoked, expired or used up."""


class AgentNameTaken(Exception):
    """An agent with that name is already registered."""


def create_enrollment_token(
    *,
    description: str = "",
    pools: list[str] | None = None,
    max_uses: int | None = None,
    expires_at: datetime | None = None,
    user=None,
) -> tuple[EnrollmentToken, str]:
    """Create an enrollment token; returns the row and the raw token (shown once)."""
    issued = issue_token("e")
    token = EnrollmentToken.objects.create(
        description=description,
        digest=issued.digest,
        prefix=issued.prefix,
        pools=pools or [],
        max_uses=max_uses,
        expires_at=expires_at,
        created_by=user,
    )
    return token, issued.raw


def ensure_pools(names: list[str]) -> None:
    existing = set(AgentPool.objects.filter(name__in=names).values_list("name", flat=True))
    AgentPool.objects.bulk_create(
        [AgentPool(name=name) for name in names if name not in existing], ignore_conflicts=True
    )


@transaction.atomic
def register_agent(
    *,
    enrollment_token: str | None,
    name: str,
    pools: list[str],
    labels: dict[str, str],
    version: str = "",
    hostname: str = "",
    replace: bool = False,
) -> tuple[Agent, str]:
    """Trade an enrollment token for a per-agent token. `replace` re-enrolls an existing name
    (rotating its token); `enrollment_token=None` is only for trusted local callers."""
    token_row = None
    if enrollment_token is not None:
        token_row = (
            EnrollmentToken.objects.select_for_update()
            .filter(digest=hash_token(enrollment_token))
            .first()
        )
        if token_row is None or not token_row.usable():
            raise EnrollmentRefused("enrollment token is invalid, revoked, expired or used up")
        pools = pools or token_row.pools
    pools = sorted(set(pools or ["default"]))
    issued = issue_token("a")
    agent = Agent.objects.select_for_update().filter(name=name).first()
    if agent and not replace:
        raise AgentNameTaken(f"agent '{name}' is already registered")
    if agent is None:
        agent = Agent(name=name)
    agent.pools = pools
    agent.labels = labels
    agent.version = version
    agent.hostname = hostname
    agent.token_digest = issued.digest
    agent.token_prefix = issued.prefix
    agent.enrollment_token = token_row
    agent.revoked_at = None
    agent.save()
    ensure_pools(pools)
    if token_row is not None:
        EnrollmentToken.objects.filter(pk=token_row.pk).update(uses=F("uses") + 1)
    return agent, issued.raw


AGENT = ModelColumns(Agent, "a")
AGENT_BY_DIGEST_SQL = f"SELECT {AGENT.sql} FROM {AGENT.table} WHERE a.token_digest = %s"


def authenticate_agent(raw_token: str) -> Agent | None:
    """The agent a token belongs to, unless revoked or disabled. Every agent request pays this,
    so it is one hand-written query (see `orchestrator.row_loading`)."""
    with connection.cursor() as cursor:
        cursor.execute(AGENT_BY_DIGEST_SQL, [hash_token(raw_token)])
        row = cursor.fetchone()
    agent = None if row is None else AGENT.load(row, 0, connection)
    if agent is None or agent.revoked_at or agent.is_disabled:
        return None
    return agent


def record_heartbeat(agent: Agent, running_jobs: list[str], version: str, load: dict[str, Any]):
    """Store liveness, version, load and the jobs the agent says it runs; an agent coming back
    online is pushed live to the agents page."""
    was_online = agent.status == "online"
    Agent.objects.filter(pk=agent.pk).update(
        last_heartbeat=timezone.now(),
        running_jobs=running_jobs,
        version=version or agent.version,
        load=load,
    )
    if not was_online or running_jobs != agent.running_jobs:
        from executions.live import publish_agent_change

        publish_agent_change(agent.name)
    fail_jobs_the_agent_forgot(agent, running_jobs)


def fail_jobs_the_agent_forgot(agent: Agent, running_jobs: list[str]) -> int:
    """Fail as "agent lost" the jobs this agent holds that its heartbeat no longer lists.

    An agent killed and restarted within its heartbeat window never looks offline, so without
    this its jobs would stay `running` until their timeout (forever without one). A job claimed
    within the last two intervals may not be listed yet (its claim response was in flight).
    """
    from executions.jobs import fail_job
    from executions.models import Job, JobStatus

    claimed_before = timezone.now() - timedelta(seconds=2 * settings.SWITCHYARD_HEARTBEAT_INTERVAL)
    listed = {str(job_id) for job_id in running_jobs}
    forgotten = [
        job_id
        for job_id in Job.objects.filter(
            agent=agent, status=JobStatus.RUNNING, started_at__lt=claimed_before
        ).values_list("pk", flat=True)
        if str(job_id) not in listed
    ]
    return sum(
        fail_job(job_id, f"agent lost ({agent.name} no longer runs it)") for job_id in forgotten
    )


def revoke_agent(agent: Agent) -> None:
    """Refuse the agent's token from now on; its running jobs are failed as lost so they retry
    elsewhere (the agent itself kills them when its heartbeats are refused)."""
    from executions.jobs import fail_job
    from executions.models import Job, JobStatus

    Agent.objects.filter(pk=agent.pk).update(revoked_at=timezone.now())
    for job_id in Job.objects.filter(agent=agent, status=JobStatus.RUNNING).values_list(
        "pk", flat=True
    ):
        fail_job(job_id, f"agent lost ({agent.name} was revoked)")
