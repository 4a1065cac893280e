"""``python manage.py import_annotations <project> FILE_OR_DIR --format coco|label_studio|sa1b
[--images DIR]``: all or nothing per file; images matched by file name or ingested from the folder
(a folder argument is its own image folder); running it again duplicates nothing."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotator.exports.imports import FORMATS, ImportRefused, import_path
from annotator.stages.management.commands._common import find_project


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="project slug or id")
        parser.add_argument("path", help="a JSON file, or a folder of them")
        parser.add_argument("--format", choices=FORMATS, required=True)
        parser.add_argument("--images", help="folder to ingest missing images from")
        parser.add_argument("--status", choices=["accepted", "proposed"], default="accepted")
        parser.add_argument("--user", help="username recorded as the masks' annotator")

    def handle(self, *args, project: str, path: str, **options) -> None:
        from pathlib import Path

        target = find_project(project)
        if not Path(path).exists():
            raise CommandError(f"{path}: no such file or folder")
        user = None
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"no user {options['user']!r}")
        outcomes = import_path(
            target, path, options["format"], user=user, images_dir=options["images"], status=options["status"]
        )
        refused = 0
        for outcome in outcomes:
            if isinstance(outcome, ImportRefused):
                refused += 1
                self.stderr.write(f"{outcome.source}: refused, nothing imported")
                for problem in outcome.problems[:50]:
                    self.stderr.write(f"  {problem}")
            else:
                self.stdout.write(
                    f"{outcome.source}: {outcome.created} masks on {outcome.images} images, "
                    f"{outcome.duplicates} already there, {outcome.images_ingested} images ingested, "
                    f"labels created: {', '.join(outcome.labels_created) or 'none'}"
                    + (f", {outcome.ignored} other results ignored" if outcome.ignored else "")
                )
        if refused:
            raise CommandError(f"{refused} of {len(outcomes)} file(s) refused")
