"""The floor: a plain Celery chain doing the same no-op work (`true` in a subprocess) on the same
Redis, so Switchyard's figures can be read as ratios to raw Celery."""

from __future__ import annotations

import os
import subprocess

from celery import Celery

app = Celery("floor", broker=os.environ.get("REDIS_URL"), backend=os.environ.get("REDIS_URL"))
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    task_default_queue="floor",
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)


@app.task(name="floor.run_true")
def run_true(_previous=None) -> int:
    return subprocess.run(["true"], check=False).returncode
