"""Cron triggers: next fire times in a timezone, one fire per tick (also with two concurrent
schedulers on PostgreSQL), misfire policies, deactivation, and the beat schedule entry."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.db import connection, connections

from executions.models import Execution
from orchestrator.celery_app import app
from orchestrator.models import CronFire, Trigger, Workflow
from orchestrator.services import add_version, publish_version
from orchestrator.triggers import fire_cron_triggers, next_fire_times
from tests.triggers.conftest import WAIT, workflow_with

BERLIN = ZoneInfo("Europe/Berlin")


def cron_trigger(slug: str, cron: str, *, cursor: datetime, nodes=None, **config) -> Trigger:
    workflow = workflow_with(slug, [{"type": "cron", "cron": cron, **config}], nodes=nodes)
    trigger = Trigger.objects.get(workflow=workflow, kind="cron")
    Trigger.objects.filter(pk=trigger.pk).update(cron_cursor=cursor)
    trigger.refresh_from_db()
    return trigger


def at(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.django_db
class TestNextFireTimes:
    def test_in_the_triggers_timezone_across_a_dst_change(self):
        trigger = cron_trigger(
            "nightly", "0 3 * * *", cursor=at(2024, 3, 29), timezone="Europe/Berlin"
        )
        fires = next_fire_times(trigger, at(2024, 3, 29, 12), 3)
        assert [f.isoformat() for f in fires] == [
            "2024-03-30T03:00:00+01:00",
            "2024-03-31T03:00:00+02:00",  # summer time started that night
            "2024-04-01T03:00:00+02:00",
        ]
        assert [f.astimezone(UTC).hour for f in fires] == [2, 1, 1]

    def test_default_timezone_is_utc(self):
        trigger = cron_trigger("quarterly", "*/15 * * * *", cursor=at(2024, 1, 1))
        fires = next_fire_times(trigger, at(2024, 1, 1, 10, 7, 30), 5)
        assert [f.isoformat() for f in fires] == [
            "2024-01-01T10:15:00+00:00",
            "2024-01-01T10:30:00+00:00",
            "2024-01-01T10:45:00+00:00",
            "2024-01-01T11:00:00+00:00",
            "2024-01-01T11:15:00+00:00",
        ]

    def test_api_lists_the_next_five(self, api):
        trigger = cron_trigger(
            "listed", "30 6 * * mon-fri", cursor=at(2024, 1, 1), timezone="America/New_York"
        )
        response = api.get("/api/v1/workflows/listed/triggers/")
        assert response.status_code == 200
        [listed] = response.json()["results"]
        assert listed["id"] == trigger.pk
        assert listed["webhook"] is None
        cron = listed["cron"]
        assert (cron["cron"], cron["timezone"], cron["misfire"]) == (
            "30 6 * * mon-fri",
            "America/New_York",
            "skip",
        )
        assert len(cron["next_fires"]) == 5
        for value in cron["next_fires"]:
            assert value.endswith(("-05:00", "-04:00"))  # in the trigger's timezone
            fire = datetime.fromisoformat(value).astimezone(ZoneInfo("America/New_York"))
            assert (fire.hour, fire.minute) == (6, 30)
            assert fire.weekday() < 5
        assert cron["next_fires"] == sorted(cron["next_fires"])


@pytest.mark.django_db
class TestFiring:
    def test_fires_once_per_tick(self):
        trigger = cron_trigger("ticking", "*/5 * * * *", cursor=at(2024, 1, 1, 9, 58))
        assert fire_cron_triggers(at(2024, 1, 1, 9, 59, 59))["fired"] == 0
        assert fire_cron_triggers(at(2024, 1, 1, 10, 0, 2))["fired"] == 1
        assert fire_cron_triggers(at(2024, 1, 1, 10, 0, 7))["fired"] == 0
        assert fire_cron_triggers(at(2024, 1, 1, 10, 0, 2))["fired"] == 0  # same now again
        assert fire_cron_triggers(at(2024, 1, 1, 10, 5, 0))["fired"] == 1  # exactly on a tick
        fires = list(CronFire.objects.filter(trigger=trigger).order_by("scheduled_at"))
        assert [f.scheduled_at for f in fires] == [at(2024, 1, 1, 10, 0), at(2024, 1, 1, 10, 5)]
        executions = Execution.objects.filter(workflow=trigger.workflow).order_by("created_at")
        assert [e.pk for e in executions] == [f.execution_id for f in fires]
        info = executions[0].trigger
        assert info["kind"] == "cron"
        assert info["schedule"] == "*/5 * * * *"
        assert info["scheduled_at"] == "2024-01-01T10:00:00+00:00"
        assert info["late"] is False
        assert executions[0].trigger_kind == "cron"

    def test_a_new_trigger_does_not_fire_past_ticks(self):
        workflow = workflow_with("fresh", [{"type": "cron", "cron": "* * * * *"}])
        trigger = Trigger.objects.get(workflow=workflow)
        assert trigger.cron_cursor is not None
        assert fire_cron_triggers(trigger.cron_cursor)["fired"] == 0
        assert fire_cron_triggers(trigger.cron_cursor + timedelta(seconds=61))["fired"] == 1

    def test_ticks_in_the_triggers_timezone(self):
        trigger = cron_trigger(
            "berlin", "0 3 * * *", cursor=at(2024, 7, 1), timezone="Europe/Berlin"
        )
        assert fire_cron_triggers(at(2024, 7, 1, 2, 59))["fired"] == 0
        assert fire_cron_triggers(at(2024, 7, 1, 3, 0, 1))["fired"] == 0  # 05:00 in Berlin
        # 03:00 CEST is 01:00 UTC
        assert fire_cron_triggers(at(2024, 7, 2, 1, 0, 1))["fired"] == 1
        fire = CronFire.objects.get(trigger=trigger)
        assert fire.scheduled_at == datetime(2024, 7, 2, 3, tzinfo=BERLIN)

    def test_misfire_skip_drops_ticks_missed_during_downtime(self):
        trigger = cron_trigger("skipper", "0 * * * *", cursor=at(2024, 1, 1, 0, 0, 30))
        # the scheduler was down from 00:00:30 to 03:20: ticks 01:00, 02:00, 03:00 were missed
        outcome = fire_cron_triggers(at(2024, 1, 1, 3, 20))
        assert (outcome["fired"], outcome["skipped"]) == (0, 1)
        assert not CronFire.objects.exists()
        trigger.refresh_from_db()
        assert trigger.cron_cursor == at(2024, 1, 1, 3, 20)
        # the next tick fires normally
        assert fire_cron_triggers(at(2024, 1, 1, 4, 0, 3))["fired"] == 1

    def test_misfire_within_the_grace_still_fires(self):
        cron_trigger("graceful", "0 * * * *", cursor=at(2024, 1, 1, 0, 0, 30))
        assert fire_cron_triggers(at(2024, 1, 1, 1, 0, 59))["fired"] == 1

    def test_misfire_run_once_fires_the_latest_missed_tick_once(self):
        trigger = cron_trigger(
            "catchup", "0 * * * *", cursor=at(2024, 1, 1, 0, 0, 30), misfire="run_once"
        )
        outcome = fire_cron_triggers(at(2024, 1, 1, 3, 20))
        assert outcome["fired"] == 1
        fire = CronFire.objects.get(trigger=trigger)
        assert fire.scheduled_at == at(2024, 1, 1, 3)
        assert fire.late is True
        assert fire.execution.trigger["late"] is True
        assert fire_cron_triggers(at(2024, 1, 1, 3, 25))["fired"] == 0
        assert CronFire.objects.count() == 1

    def test_deactivated_workflow_does_not_fire_nor_catch_up(self):
        trigger = cron_trigger(
            "paused", "*/5 * * * *", cursor=at(2024, 1, 1, 9, 58), misfire="run_once"
        )
        workflow = trigger.workflow
        workflow.is_active = False
        workflow.save()
        assert fire_cron_triggers(at(2024, 1, 1, 10, 0, 1))["fired"] == 0
        workflow.is_active = True
        workflow.save()
        # the tick while it was deactivated was consumed, not fired late
        assert fire_cron_triggers(at(2024, 1, 1, 10, 2))["fired"] == 0
        assert fire_cron_triggers(at(2024, 1, 1, 10, 5, 1))["fired"] == 1
        assert CronFire.objects.get().scheduled_at == at(2024, 1, 1, 10, 5)

    def test_a_run_that_cannot_start_is_recorded_once(self):
        trigger = cron_trigger(
            "needs-input",
            "*/5 * * * *",
            cursor=at(2024, 1, 1, 9, 58),
        )
        # publish a version with a required input and no trigger `inputs:` for it
        add_version(
            trigger.workflow,
            {
                "slug": "needs-input",
                "inputs": {"target": {"type": "string", "required": True}},
                "nodes": [WAIT],
                "triggers": [{"type": "cron", "cron": "*/5 * * * *"}],
            },
        )
        publish_version(trigger.workflow)
        outcome = fire_cron_triggers(at(2024, 1, 1, 10, 0, 1))
        assert (outcome["fired"], outcome["failed"]) == (0, 1)
        fire = CronFire.objects.get()
        assert fire.execution is None
        assert "inputs.target" in fire.error
        assert fire_cron_triggers(at(2024, 1, 1, 10, 0, 4))["failed"] == 0

    def test_trigger_inputs_are_rendered_from_the_tick(self):
        cron_trigger(
            "stamped",
            "0 0 * * *",
            cursor=at(2024, 1, 1, 12),
            inputs={"day": "{{ trigger.scheduled_at[:10] }}"},
        )
        # the definition above declares no inputs: add one through a new version
        workflow = Workflow.objects.get(slug="stamped")
        add_version(
            workflow,
            {
                "slug": "stamped",
                "inputs": {"day": "string"},
                "nodes": [WAIT],
                "triggers": [
                    {
                        "type": "cron",
                        "cron": "0 0 * * *",
                        "inputs": {"day": "{{ trigger.scheduled_at[:10] }}"},
                    }
                ],
            },
        )
        publish_version(workflow)
        Trigger.objects.filter(workflow=workflow).update(cron_cursor=at(2024, 1, 1, 12))
        assert fire_cron_triggers(at(2024, 1, 2, 0, 0, 5))["fired"] == 1
        assert Execution.objects.get().inputs == {"day": "2024-01-02"}


def race(now: datetime, callers: int = 2) -> list[dict]:
    """Call fire_cron_triggers(now) from `callers` threads released at the same moment, each
    on its own database connection; return their outcomes."""
    barrier = threading.Barrier(callers)
    results: list[dict] = []
    errors: list[BaseException] = []

    def scheduler() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(fire_cron_triggers(now))
        except BaseException as error:  # re-raised in the test thread below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=scheduler) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(results) == callers
    return results


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_schedulers_fire_a_tick_exactly_once():
    """Two callers at the same controlled `now`, each on its own PostgreSQL connection, race
    for the same tick: the unique (trigger, scheduled_at) insert lets exactly one start a run."""
    assert connection.vendor == "postgresql"
    trigger = cron_trigger("raced", "*/5 * * * *", cursor=at(2024, 1, 1, 9, 58), nodes=[WAIT])
    for tick in range(5):
        results = race(at(2024, 1, 1, 10, 0, 1) + timedelta(minutes=5 * tick))
        assert sorted(r["fired"] for r in results) == [0, 1], results
    assert CronFire.objects.filter(trigger=trigger).count() == 5
    assert Execution.objects.filter(workflow=trigger.workflow).count() == 5
    assert not CronFire.objects.filter(execution__isnull=True).exists()


def test_the_beat_schedule_runs_the_firing_task_every_few_seconds():
    entry = settings.CELERY_BEAT_SCHEDULE["fire-cron-triggers"]
    assert entry["task"] == "orchestrator.tasks.fire_cron_triggers"
    assert entry["schedule"] <= 10
    app.loader.import_default_modules()
    assert "orchestrator.tasks.fire_cron_triggers" in app.tasks
