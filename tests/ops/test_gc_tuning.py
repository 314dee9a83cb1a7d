"""The web process freezes what start-up left alive out of the garbage collector's scans and
collects young objects less often (see `orchestrator.gc_tuning`)."""

from __future__ import annotations

from tests.support import run_in_fresh_django

PROBE = """
import gc
default_threshold = gc.get_threshold()[0]
import orchestrator.asgi
print(default_threshold, gc.get_threshold()[0], gc.get_freeze_count() > 10_000)
"""


def test_the_asgi_app_tunes_the_collector_once_its_views_are_loaded(tmp_path):
    database = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    assert run_in_fresh_django(PROBE, database, tmp_path) == ["700 20000 True"]


def test_tuning_can_be_turned_off(tmp_path):
    database = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    output = run_in_fresh_django(PROBE, database, tmp_path, SWITCHYARD_GC_TUNING="0")
    assert output == ["700 700 False"]
