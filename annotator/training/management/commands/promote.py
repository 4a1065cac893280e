"""``python manage.py promote <project> <version>``: make a model version the project's active one
by hand (workers and web processes use it on their next task or click)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotator.stages.management.commands._common import find_project
from annotator.training import promotion, selectors


class Command(BaseCommand):
    help = "Make a model version the project's active version."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="project slug or id")
        parser.add_argument("version", type=int, help="model version id")

    def handle(self, *args, project: str, version: int, **options) -> None:
        target = find_project(project)
        found = selectors.version_of_project(target, version)
        if found is None:
            raise CommandError(f"model version {version} is not one of project {target.slug}'s")
        try:
            done = promotion.promote(target, found)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        self.stdout.write(f"{target.slug}: version {done.version_id} active (was {done.previous_id})")
