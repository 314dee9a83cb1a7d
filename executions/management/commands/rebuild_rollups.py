"""`manage.py rebuild_rollups [--since DATE]`: recompute the analytics rollups from raw rows."""

from __future__ import annotations

from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from executions.rollups import rebuild


def parse_since(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as error:
        raise CommandError(f"--since: not an ISO date or time: {value!r}") from error
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = (
        "Recompute the analytics rollups of executions created since a UTC day (default: all). "
        "Terminal transitions wait while it runs."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--since", type=parse_since, help="ISO date or time; rounded down to its UTC day."
        )

    def handle(self, *args, **options) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("rollups need PostgreSQL")
        since = options["since"] or datetime(1970, 1, 1, tzinfo=UTC)
        rebuild(since)
        self.stdout.write(f"rollups rebuilt from {since.astimezone(UTC).date().isoformat()}")
