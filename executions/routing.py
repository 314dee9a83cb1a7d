"""Choosing a job's queue: its pool's queue, a named agent's queue, or, when the node asks for
labels, the own queue of the least busy online agent of the pool that carries them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone

from agents.models import Agent
from executions.models import JobStatus
from executions.recorder import EventRecorder


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


class QueueRouter:
    """Routes the jobs of one advance; agent lookups are cached for its duration."""

    def __init__(self, recorder: EventRecorder | None = None) -> None:
        self.recorder = recorder
        self.cache: dict[str, list[Agent]] = {}

    def agents_in(self, pool: str) -> list[Agent]:
        """Online agents of `pool` with their running-job counts (one query per advance; the
        fleet is small, and filtering pools in Python keeps SQLite supported)."""
        if "" not in self.cache:
            self.cache[""] = list(
                online_agents().annotate(
                    busy=Count("jobs", filter=Q(jobs__status=JobStatus.RUNNING))
                )
            )
        return [agent for agent in self.cache[""] if pool in agent.pools]

    def route(self, *, pool: str, agent: str, labels: dict[str, str]) -> Route:
        if agent:
            online = online_agents().filter(name=agent).exists()
            reason = "" if online else f"agent '{agent}' is offline"
            return Route(queue=f"agent.{agent}", pool="", wait_reason=reason)
        candidates = self.agents_in(pool)
        if labels:
            matching = [
                a for a in candidates if all(a.labels.get(k) == v for k, v in labels.items())
            ]
            if not matching:
                return Route(
                    queue="",
                    pool=pool,
                    wait_reason=(
                        f"no online agent in pool '{pool}' with labels {describe_labels(labels)}"
                    ),
                )
            chosen = min(matching, key=lambda a: (a.busy, a.name))
            chosen.busy += 1
            return Route(queue=f"agent.{chosen.name}", pool=pool)
        reason = "" if candidates else f"no online agent in pool '{pool}'"
        return Route(queue=f"pool.{pool}", pool=pool, wait_reason=reason)
