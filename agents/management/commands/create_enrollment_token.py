from django.core.management.base import BaseCommand

from agents.services import create_enrollment_token


class Command(BaseCommand):
    help = "Print a new agent enrollment token (for `switchyard-agent register`)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--description", default="")
        parser.add_argument("--pool", action="append", dest="pools", default=[])
        parser.add_argument("--max-uses", type=int, default=None)

    def handle(self, *args, description: str, pools: list[str], max_uses, **options) -> None:
        _, raw = create_enrollment_token(description=description, pools=pools, max_uses=max_uses)
        self.stdout.write(raw)
