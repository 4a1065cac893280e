"""``python manage.py stage <project> <stage> [--filter KEY=VALUE ...] [--no-generate]``."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotator.projects.models import Stage
from annotator.stages import services
from annotator.stages.management.commands._common import add_filter_argument, find_project, parse_filter_args


class Command(BaseCommand):
    help = (
        "Move a project (or, with --filter, some of its images) to a stage. Entering semi_automatic "
        "pre-fills the images with the model's confident masks; entering fully_automatic starts a "
        "generation run (watch it with `manage.py generate <project> --watch`)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="project slug or id")
        parser.add_argument("stage", choices=Stage.values)
        add_filter_argument(parser)
        parser.add_argument("--no-generate", action="store_true", help="change the stage only, start no run")

    def handle(self, *args, project: str, stage: str, **options) -> None:
        target = find_project(project)
        try:
            run = services.set_stage(
                target,
                stage,
                image_filter=parse_filter_args(options["filter"]),
                generate=not options["no_generate"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        target.refresh_from_db()
        self.stdout.write(f"project {target.slug}: stage {target.stage}")
        if run is not None:
            self.stdout.write(f"generation run {run.pk} ({run.mode}): {run.total} images queued")
