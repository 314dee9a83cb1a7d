from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from orchestrator.authentication import create_api_token
from orchestrator.roles import Role, roles_of, set_roles


class Command(BaseCommand):
    help = (
        "Print a new API token for USER (use it as `Authorization: Token <key>`). The token acts "
        "with the user's roles (viewer, operator, approver, admin; superusers are admins); "
        "`--role` adds one first, `--create` creates the user."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="cli", help="a label for the token")
        parser.add_argument(
            "--role",
            action="append",
            default=[],
            choices=[role.value for role in Role],
            help="add USER to this role first (repeatable)",
        )
        parser.add_argument("--create", action="store_true", help="create USER if missing")

    def handle(self, *args, username: str, name: str, role: list[str], create: bool, **options):
        users = get_user_model().objects
        user = users.filter(username=username).first()
        if user is None and create:
            user = users.create_user(username=username)
        if user is None:
            raise CommandError(f"no user named '{username}' (use --create)")
        set_roles(user, add=role)
        if not roles_of(user):
            self.stderr.write(
                f"warning: '{username}' has no role, so the token can do nothing; "
                "add one with --role or `manage.py roles`"
            )
        self.stdout.write(create_api_token(user, name))
