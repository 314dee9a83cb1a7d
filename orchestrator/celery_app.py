"""The control plane's Celery app: the `control` queue (sweeps, timers) and job publishing.

Agents run their own Django-free Celery app (`agents.agent.worker`); both sides agree only on
the task name `switchyard.run_job` and its single JSON argument, the job id.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")

app = Celery("switchyard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["executions", "orchestrator", "approvals"])

RUN_JOB_TASK = "switchyard.run_job"
