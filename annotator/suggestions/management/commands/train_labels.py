"""``manage.py train_labels <project>``: train the project's label head now, evaluate it on the val
split and promote it when it is no worse than the active one."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from annotator.stages.management.commands._common import find_project
from annotator.suggestions.services import train_head
from engine.labels import LabelHeadError


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser) -> None:
        parser.add_argument("project", help="project slug or id")

    def handle(self, *args, **options) -> None:
        project = find_project(options["project"])
        try:
            row = train_head(project)
        except LabelHeadError as exc:
            raise CommandError(str(exc)) from exc
        metrics = row.metrics
        self.stdout.write(
            f"label head #{row.pk}: {row.masks_trained} masks, val top-1 {metrics.get('top1')}, "
            f"top-3 {metrics.get('top3')} on {metrics.get('n', 0)} masks; {row.status}: {row.reason}"
        )
