from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from orchestrator.roles import ROLE_DESCRIPTIONS, Role, roles_of, set_roles


class Command(BaseCommand):
    help = (
        "Show or change a user's roles: `roles alice` prints them, `roles alice --add operator "
        "--remove viewer` changes them. Without USER, lists the roles and what each may do."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("username", nargs="?")
        names = [role.value for role in Role]
        parser.add_argument("--add", action="append", default=[], choices=names)
        parser.add_argument("--remove", action="append", default=[], choices=names)

    def handle(self, *args, username: str | None, add: list[str], remove: list[str], **options):
        if username is None:
            for role, description in ROLE_DESCRIPTIONS.items():
                self.stdout.write(f"{role.value}: {description}")
            return
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named '{username}'")
        set_roles(user, add=add, remove=remove)
        self.stdout.write(f"{username}: {', '.join(roles_of(user)) or '(no role)'}")
