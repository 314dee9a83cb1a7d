"""Delete old finished executions (and everything hanging off them) in batches."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from orchestrator.retention import purge_finished_executions, workflow_keeps


class Command(BaseCommand):
    help = (
        "Delete finished executions older than --days that are not among the --count newest "
        "of their workflow (defaults: SWITCHYARD_RETENTION_DAYS / SWITCHYARD_RETENTION_COUNT; "
        "0 = no limit of that kind). Workflows with `keep:` in their published version use "
        "their own policy instead."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=None, help="keep runs this many days")
        parser.add_argument(
            "--count", type=int, default=None, help="keep this many newest runs per workflow"
        )
        parser.add_argument("--batch", type=int, default=500, help="executions per transaction")
        parser.add_argument("--dry-run", action="store_true", help="only count what would go")

    def handle(self, *args, days, count, batch, dry_run, **options):
        days = settings.SWITCHYARD_RETENTION_DAYS if days is None else days
        count = settings.SWITCHYARD_RETENTION_COUNT if count is None else count
        if (days or 0) < 0 or (count or 0) < 0 or batch < 1:
            raise CommandError("--days and --count must be >= 0 and --batch >= 1")
        keeps = workflow_keeps()
        if not days and not count and not any(any(keep) for keep in keeps.values()):
            self.stdout.write("no retention policy (days and count are 0): nothing to purge")
            return
        policy = f"days={days or '-'} count={count or '-'}"
        if keeps:
            policy += f"; {len(keeps)} workflows with their own keep"
        n = purge_finished_executions(days, count, batch, dry_run=dry_run)
        verb = "would purge" if dry_run else "purged"
        self.stdout.write(f"{verb} {n} finished executions ({policy})")
