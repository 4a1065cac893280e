"""``python manage.py rollback <project>``: back to the version that was active before this one."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotator.stages.management.commands._common import find_project
from annotator.training import promotion


class Command(BaseCommand):
    help = "Roll a project back to its previously active model version."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="project slug or id")

    def handle(self, *args, project: str, **options) -> None:
        target = find_project(project)
        try:
            done = promotion.rollback(target)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        self.stdout.write(f"{target.slug}: rolled back to version {done.version_id} (was {done.previous_id})")
