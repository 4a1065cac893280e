"""``python manage.py ingest <project> <paths|globs|folders|list.txt|URLs>...`` with a progress bar."""

from __future__ import annotations

import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from annotator.images.services import expand_cli_sources, ingest_files
from annotator.projects.models import Project


class Command(BaseCommand):
    help = (
        "Ingest images into a project: files, globs (quote them; ** recurses), folders (their image files), "
        "or .txt files with one URL or path per line. Bad files are reported and skipped; duplicates too."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="project slug or id")
        parser.add_argument(
            "sources", nargs="+", help="paths, globs, folders, list .txt files or http(s) URLs"
        )
        parser.add_argument("--user", help="username recorded as the uploader")
        parser.add_argument("--json", action="store_true", help="print the per-file results as JSON")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, project: str, sources: list[str], **options) -> None:
        target = Project.objects.filter(slug=project).first()
        if target is None and project.isdigit():
            target = Project.objects.filter(pk=int(project)).first()
        if target is None:
            raise CommandError(f"no project with slug or id {project!r}")
        user = None
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"no user {options['user']!r}")

        items = expand_cli_sources(sources)
        bar = tqdm(
            total=len(items), unit="img", disable=options["no_progress"], desc=f"ingest → {target.slug}"
        )
        counts = {"created": 0, "duplicate": 0, "error": 0}

        def progress(name: str, outcome: str) -> None:
            counts[outcome] += 1
            bar.set_postfix(
                new=counts["created"], dup=counts["duplicate"], err=counts["error"], refresh=False
            )
            bar.update(1)

        result = ingest_files(target, items, user, on_each=progress)
        bar.close()
        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict(), indent=2))
            return
        for error in result.errors:
            self.stderr.write(f"refused {error['name']}: {error['reason']}")
        for duplicate in result.duplicates:
            self.stdout.write(f"skipped {duplicate['name']}: same bytes as image {duplicate['image']}")
        self.stdout.write(
            self.style.SUCCESS(
                f"{len(result.created)} new, {len(result.duplicates)} duplicate, "
                f"{len(result.errors)} refused (project {target.slug})"
            )
        )
