"""``python manage.py labelstudio push|pull <project> --url URL --token TOKEN [--ls-project ID]``."""

from __future__ import annotations

import json

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotator.labelstudio import client, sync
from annotator.labelstudio.models import Connection
from annotator.labelstudio.regions import RegionError
from annotator.stages.management.commands._common import find_project


class Command(BaseCommand):
    help = (
        "Push a project to Label Studio (tasks, masks as predictions or annotations) or pull its annotations."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("direction", choices=["push", "pull"])
        parser.add_argument("project", help="project slug or id")
        parser.add_argument("--url", help="Label Studio base URL (saved with the project)")
        parser.add_argument("--token", help="Label Studio API token (saved, never printed)")
        parser.add_argument(
            "--ls-project", type=int, help="the Label Studio project id (push creates one if unset)"
        )
        parser.add_argument(
            "--as-annotations", action="store_true", help="push masks as annotations, not predictions"
        )
        parser.add_argument(
            "--user",
            help="Maskmill user credited for pulled regions whose Label Studio author has no account here",
        )

    def handle(self, *args, **options) -> None:
        project = find_project(options["project"])
        user = None
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"no user {options['user']!r}")
        try:
            if options["url"] or options["token"] or options["ls_project"]:
                connection = client.save_connection(
                    project,
                    url=options["url"],
                    token=options["token"],
                    ls_project_id=options["ls_project"],
                    user=user,
                )
            else:
                connection = Connection.objects.filter(project=project).first()
                if connection is None:
                    raise CommandError("the project is not connected yet: pass --url and --token")
            if options["direction"] == "push":
                done = sync.push(connection, as_annotations=options["as_annotations"])
            else:
                done = sync.pull(connection, user)
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from None
        except (RegionError, client.FetchError, sync.SyncError) as error:
            raise CommandError(str(error)) from None
        self.stdout.write(json.dumps(done, default=str))
