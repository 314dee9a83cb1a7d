"""`manage.py generate_history`: bulk synthetic execution history (see `executions.history`)."""

from __future__ import annotations

import time
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.utils import timezone

from executions.history import HistorySpec, generate
from executions.rollups import rebuild


class Command(BaseCommand):
    help = "Generate synthetic executions and jobs in PostgreSQL for analytics and benchmarks."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--executions", type=int, default=1000)
        parser.add_argument("--jobs-per-execution", type=int, default=5)
        parser.add_argument("--workflows", type=int, default=40)
        parser.add_argument("--days", type=int, default=90)
        parser.add_argument(
            "--wide-jobs", type=int, default=200, help="Jobs of the one wide execution (0: none)."
        )
        parser.add_argument(
            "--batch", type=int, default=250_000, help="Executions per transaction."
        )

    def handle(self, *args, **options) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("generate_history needs PostgreSQL")
        for name in ("executions", "jobs_per_execution", "workflows", "days", "batch"):
            if options[name] < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be at least 1")
        began = time.monotonic()
        remaining, totals = options["executions"], {"executions": 0, "jobs": 0}
        first = True
        started = timezone.now()
        while remaining > 0:
            size = min(remaining, options["batch"])
            spec = HistorySpec(
                executions=size,
                jobs_per_execution=options["jobs_per_execution"],
                workflows=options["workflows"],
                days=options["days"],
                wide_jobs=options["wide_jobs"] if first else 0,
                seed=(0.42 + totals["executions"] / max(1, options["executions"])) % 1,
            )
            counts = generate(spec)
            totals = {key: totals[key] + counts[key] for key in totals}
            remaining -= size
            first = False
            self.stdout.write(
                f"{totals['executions']} executions, {totals['jobs']} jobs "
                f"({time.monotonic() - began:.1f} s)"
            )
        rebuild(started - timedelta(days=options["days"] + 1))
        self.stdout.write(f"rollups rebuilt ({time.monotonic() - began:.1f} s)")
