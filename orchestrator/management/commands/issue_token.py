from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from orchestrator.authentication import create_api_token


class Command(BaseCommand):
    help = "Print a new API token for USER (use it as `Authorization: Token <key>`)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="cli", help="a label for the token")

    def handle(self, *args, username: str, name: str, **options) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named '{username}'")
        self.stdout.write(create_api_token(user, name))
