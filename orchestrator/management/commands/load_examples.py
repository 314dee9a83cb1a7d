from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from orchestrator.engine import DefinitionError
from orchestrator.models import Workflow
from orchestrator.services import add_version, create_workflow, publish_version, validate_definition


class Command(BaseCommand):
    help = "Create or update workflows from the YAML/JSON files in a folder (default: examples/)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("folder", nargs="?", default=str(settings.BASE_DIR / "examples"))

    def handle(self, *args, folder: str, **options) -> None:
        paths = sorted(p for p in Path(folder).glob("*") if p.suffix in {".yaml", ".yml", ".json"})
        if not paths:
            raise CommandError(f"no workflow files in {folder}")
        for path in paths:
            text = path.read_text()
            try:
                spec = validate_definition(text)
            except DefinitionError as error:
                raise CommandError(f"{path}: {error}") from error
            workflow = Workflow.objects.filter(slug=spec.slug).first()
            if workflow is None:
                create_workflow(text)
                self.stdout.write(f"created {spec.slug}")
            elif workflow.published_version.source != text:
                version = add_version(workflow, text)
                publish_version(workflow, version.number)
                self.stdout.write(f"updated {spec.slug} to v{version.number}")
