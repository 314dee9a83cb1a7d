"""Choosing a job's queue: its pool's queue, a named agent's queue, or, when the node asks for
labels, the own queue of the least busy online agent of the pool that carries them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from agents.models import Agent
from executions.models import Job, JobStatus
from executions.recorder import EventRecorder

# Pools seen with an online agent recently. Only positive answers are cached, and for plain pool
# routing they decide nothing but the wait-reason text (the job goes to the pool queue anyway).
POOL_SEEN_ONLINE_TTL_S = 2.0
pools_seen_online: dict[str, float] = {}


@dataclass(frozen=True)
class Route:
    queue: str
    pool: str
    wait_reason: str = ""


def online_cutoff():
    return timezone.now() - timedelta(seconds=3 * settings.SWITCHYARD_HEARTBEAT_INTERVAL)


def online_agents():
    return Agent.objects.filter(
        is_disabled=False, revoked_at__isnull=True, last_heartbeat__gte=online_cutoff()
    )


def describe_labels(labels: dict[str, str]) -> str:
    return ", ".join(f"{key}={value}" for key, value in sorted(labels.items()))


def running_jobs_of_agent():
    """Per-agent count of running jobs, answered from the (agent, status) index."""
    counts = (
        Job.objects.filter(agent=OuterRef("pk"), status=JobStatus.RUNNING)
        .values("agent")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counts), 0)


class QueueRouter:
    """Routes the jobs of one advance; agent lookups are cached for its duration."""

    def __init__(self, recorder: EventRecorder | None = None) -> None:
        self.recorder = recorder
        self.online: list[Agent] | None = None

    def agents_in(self, pool: str) -> list[Agent]:
        """Online agents of `pool` (one query per advance; pools are filtered in Python so
        SQLite works too)."""
        if self.online is None:
            self.online = list(online_agents().only("id", "name", "pools", "labels"))
        return [agent for agent in self.online if pool in agent.pools]

    def pool_has_online_agent(self, pool: str) -> bool:
        seen = pools_seen_online.get(pool)
        if seen is not None and time.monotonic() - seen < POOL_SEEN_ONLINE_TTL_S:
            return True
        if self.agents_in(pool):
            pools_seen_online[pool] = time.monotonic()
            return True
        return False

    def route(self, *, pool: str, agent: str, labels: dict[str, str]) -> Route:
        if agent:
            online = online_agents().filter(name=agent).exists()
            reason = "" if online else f"agent '{agent}' is offline"
            return Route(queue=f"agent.{agent}", pool="", wait_reason=reason)
        if labels:
            return self.route_by_labels(pool, labels)
        reason = "" if self.pool_has_online_agent(pool) else f"no online agent in pool '{pool}'"
        return Route(queue=f"pool.{pool}", pool=pool, wait_reason=reason)

    def route_by_labels(self, pool: str, labels: dict[str, str]) -> Route:
        matching = [
            a for a in self.agents_in(pool) if all(a.labels.get(k) == v for k, v in labels.items())
        ]
        if not matching:
            return Route(
                queue="",
                pool=pool,
                wait_reason=(
                    f"no online agent in pool '{pool}' with labels {describe_labels(labels)}"
                ),
            )
        busy = dict(
            Agent.objects.filter(pk__in=[a.pk for a in matching])
            .annotate(busy=running_jobs_of_agent())
            .values_list("pk", "busy")
        )
        chosen = min(matching, key=lambda a: (busy.get(a.pk, 0), a.name))
        return Route(queue=f"agent.{chosen.name}", pool=pool)
