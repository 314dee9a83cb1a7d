"""Publishing jobs to agent queues: the second half of the transactional outbox.

Job rows are committed first (status `pending`); only then is each id published to its queue.
A crash in between leaves `pending` rows that the sweeper publishes later, and a duplicate
publish is harmless because agents must win a claim before running anything.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from functools import partial

from django.db.models import Count
from django.db.models.functions import Coalesce
from django.utils import timezone

from executions.commit_hooks import on_commit_robust
from executions.models import Job, JobStatus
from executions.routing import online_agents
from orchestrator.celery_app import RUN_JOB_TASK, app

logger = logging.getLogger("switchyard.dispatch")


def publish_jobs(jobs: Iterable[tuple[str, str]]) -> list[str]:
    """Send `(job_id, queue)` doorbells to the broker and mark the published rows `dispatched`."""
    published = []
    for job_id, queue in jobs:
        try:
            app.send_task(RUN_JOB_TASK, args=[str(job_id)], queue=queue, routing_key=queue)
        except Exception:
            logger.exception(
                "publishing job %s to %s failed; the sweeper will retry", job_id, queue
            )
            continue
        published.append(job_id)
    if published:
        now = timezone.now()
        Job.objects.filter(pk__in=published, status=JobStatus.PENDING).update(
            status=JobStatus.DISPATCHED, dispatched_at=Coalesce("dispatched_at", now)
        )
    return published


def publish_after_commit(jobs: list[tuple[str, str]]) -> None:
    """Publish once the surrounding transaction commits (never for a rolled-back one).

    A queue given more than `DOORBELLS_ALWAYS` jobs at once (a fan-out) gets doorbells for as
    many as the online agents serving it have slots, at least `DOORBELLS_ALWAYS`: a doorbell
    beyond that finds every slot busy, and by the time one is free its agent's report has
    already pulled the oldest due job, so the doorbell only costs a publish here and a broker
    round trip there. The jobs not rung stay `pending`: reports offering a slot pull them, and
    the sweeper rings what is still pending after `SWITCHYARD_REPUBLISH_PENDING_AFTER` within
    the same budget (see `executions.sweeper.due_jobs`)."""
    if jobs:
        on_commit_robust(partial(publish_jobs, doorbells_worth_ringing(jobs)))


DOORBELLS_ALWAYS = 8


def doorbells_worth_ringing(
    jobs: list[tuple[str, str]], *, counting_unanswered: bool = False
) -> list[tuple[str, str]]:
    """`jobs` (in order) without those beyond each wide queue's doorbell budget. With
    `counting_unanswered`, doorbells already rung and not yet answered (jobs `dispatched`) use
    up the budget too: the sweeper's view, which comes back every few seconds."""
    wide = {
        queue for queue, count in Counter(q for _, q in jobs).items() if count > DOORBELLS_ALWAYS
    }
    if not wide:
        return list(jobs)
    slots = slots_serving(wide)
    rung: Counter[str] = unanswered_doorbells(wide) if counting_unanswered else Counter()
    kept = []
    for job_id, queue in jobs:
        budget = slots.get(queue)
        if queue in wide and budget is not None and rung[queue] >= max(budget, DOORBELLS_ALWAYS):
            continue
        rung[queue] += 1
        kept.append((job_id, queue))
    return kept


def unanswered_doorbells(queues: set[str]) -> Counter[str]:
    """Jobs of each queue published and not yet claimed: doorbells still in the broker."""
    return Counter(
        dict(
            Job.objects.filter(status=JobStatus.DISPATCHED, queue__in=queues)
            .values_list("queue")
            .annotate(count=Count("id"))
        )
    )


def slots_serving(queues: set[str]) -> dict[str, int | None]:
    """Slots of the online agents consuming each queue, from their last heartbeat; None when an
    agent has not said yet (then its queue is not capped)."""
    slots: dict[str, int | None] = dict.fromkeys(queues, 0)
    for agent in online_agents().only("name", "pools", "load"):
        agent_slots = (agent.load or {}).get("slots")
        for queue in queues.intersection(agent.queues):
            if not isinstance(agent_slots, int) or agent_slots < 1:
                slots[queue] = None
            elif slots[queue] is not None:
                slots[queue] += agent_slots
    return slots
