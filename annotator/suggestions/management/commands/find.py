"""``manage.py find <project> <label>``: propose every automatic-generator mask whose suggested label
is <label> (or one of its synonyms), on a filtered set of images, for review."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotator.images.models import Image
from annotator.stages.management.commands._common import find_project
from annotator.suggestions.find import find_in_image, resolve_label
from annotator.suggestions.services import SuggestionsUnavailable


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser) -> None:
        parser.add_argument("project", help="project slug or id")
        parser.add_argument("label", help="a label of the project or a synonym (not open-vocabulary text)")
        parser.add_argument("--split", choices=["train", "val", "test"])
        parser.add_argument("--images", help="comma-separated image ids")
        parser.add_argument("--limit", type=int, default=1000, help="at most this many images (default 1000)")

    def handle(self, *args, **options) -> None:
        project = find_project(options["project"])
        try:
            label = resolve_label(project, options["label"])
        except ValidationError as exc:
            raise CommandError(" ".join(exc.message_dict.get("label", exc.messages))) from exc
        images = Image.objects.filter(project=project).select_related("project").order_by("id")
        if options["split"]:
            images = images.filter(split=options["split"])
        if options["images"]:
            try:
                ids = [int(v) for v in options["images"].split(",") if v.strip()]
            except ValueError as exc:
                raise CommandError("--images: comma-separated integers") from exc
            images = images.filter(pk__in=ids)
        total = 0
        for image in images[: max(options["limit"], 0)]:
            try:
                result = find_in_image(image, label)
            except SuggestionsUnavailable as exc:
                raise CommandError(str(exc)) from exc
            total += len(result.proposed)
            self.stdout.write(
                f"image {image.pk}: {len(result.proposed)} proposed of {result.candidates} generator masks"
                + (f" ({result.duplicates} already there)" if result.duplicates else "")
            )
        self.stdout.write(self.style.SUCCESS(f"{total} {label.name} mask(s) proposed for review"))
