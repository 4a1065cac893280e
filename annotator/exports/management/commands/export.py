"""``python manage.py export <project> --format sa1b|coco|label_studio|png [--out DIR] [filters]
[--blur-faces] [--shard-size N] [--watch]``: the same service as the ``export`` task. With
``--out`` it writes there now with a progress bar; without, it queues the job (``--watch`` follows
it). ``--export ID`` with ``--watch``, ``--resume`` or ``--cancel`` acts on an existing export."""

from __future__ import annotations

import time

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from annotator.exports import services
from annotator.exports.models import Export, ExportFormat
from annotator.jobs import UNFINISHED, JobStatus
from annotator.stages.management.commands._common import find_project

FILTER_OPTIONS = {
    "mask_status": "accepted (default), proposed, rejected; comma-separated",
    "source": "manual, semi, auto; comma-separated",
    "labels": "label names, comma-separated",
    "split": "train, val, test",
    "image_status": "new, in_progress, annotated, needs_rework, reviewed",
    "min_predicted_iou": "0..1",
    "min_stability": "0..1",
    "model_version": "model version ids, comma-separated",
    "created_after": "ISO date or date-time",
}


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="project slug or id")
        parser.add_argument("--format", choices=ExportFormat.values)
        parser.add_argument("--out", help="write into this folder now (else: queue on the export workers)")
        for key, text in FILTER_OPTIONS.items():
            parser.add_argument(f"--{key.replace('_', '-')}", dest=key, help=text)
        parser.add_argument("--shard-size", type=int, help="SA-1B: images per tar (default 1000)")
        parser.add_argument("--max-side", type=int, help="SA-1B: shortest side at most this many pixels")
        parser.add_argument("--blur-faces", action="store_true", help="SA-1B: blur faces (OpenCV cascades)")
        parser.add_argument("--blur-plates", action="store_true", help="SA-1B: blur licence plates too")
        parser.add_argument("--coco-polygons", action="store_true", help="COCO: polygons instead of RLE")
        parser.add_argument("--image-url", help="Label Studio: URL template with {file_name} or {image_id}")
        parser.add_argument("--watch", action="store_true", help="follow a queued export until it ends")
        parser.add_argument(
            "--export",
            type=int,
            dest="export_id",
            help="an existing export: --watch, --resume or --cancel it",
        )
        parser.add_argument(
            "--resume", action="store_true", help="with --export: continue where its files stop"
        )
        parser.add_argument("--cancel", action="store_true", help="with --export: cancel it")
        parser.add_argument("--no-progress", action="store_true")
        parser.add_argument("--interval", type=float, default=1.0, help="seconds between --watch reads")

    def handle(self, *args, project: str, **options) -> None:
        target = find_project(project)
        if options["export_id"] is not None:
            export = Export.objects.filter(pk=options["export_id"], project=target).first()
            if export is None:
                raise CommandError(f"project {target.slug} has no export {options['export_id']}")
            if options["cancel"]:
                export = services.cancel_export(export)
                self.stdout.write(f"export {export.pk}: {export.status}")
                return
            if options["resume"]:
                try:
                    export = services.resume_export(export, enqueue=not export.out_dir)
                except ValidationError as exc:
                    raise CommandError("; ".join(exc.messages)) from exc
                if not export.out_dir and not options["watch"]:
                    self.stdout.write(f"export {export.pk} queued again; --watch follows it")
                    return
            elif not options["watch"]:
                self.stdout.write(
                    f"export {export.pk}: {export.status}, {export.images_done}/{export.images_total}"
                )
                return
        else:
            if not options["format"]:
                raise CommandError("--format is required (sa1b, coco, label_studio or png)")
            filter_data = {key: options[key] for key in FILTER_OPTIONS if options[key] is not None}
            export_options = {
                key: options[key]
                for key in (
                    "shard_size",
                    "max_side",
                    "blur_faces",
                    "blur_plates",
                    "coco_polygons",
                    "image_url",
                )
                if options[key] not in (None, False)
            }
            try:
                export = services.create_export(
                    target, options["format"], filter_data=filter_data, options=export_options,
                    out_dir=options["out"], enqueue=not options["out"],
                )  # fmt: skip
            except ValidationError as exc:
                raise CommandError(
                    "; ".join(f"{k}: {', '.join(v)}" for k, v in exc.message_dict.items())
                ) from exc
        if export.out_dir and export.status == JobStatus.PENDING:
            export = self._foreground(export, options["no_progress"])
        elif options["watch"]:
            export = self._watch(export, options["interval"], options["no_progress"])
        else:
            self.stdout.write(f"export {export.pk} queued ({export.images_total} images); --watch follows it")
            return
        self._report(export)

    def _foreground(self, export: Export, quiet: bool) -> Export:
        bar = tqdm(
            total=export.images_total, unit="img", disable=quiet, desc=f"export {export.pk} ({export.format})"
        )

        def progress(row: Export) -> None:
            bar.total = row.images_total
            bar.update(row.images_done - bar.n)
            bar.set_postfix(masks=row.masks_done, refresh=False)

        export = services.run_export(export.pk, on_progress=progress)
        bar.close()
        return export

    def _watch(self, export: Export, interval: float, quiet: bool) -> Export:
        bar = tqdm(
            total=export.images_total, unit="img", disable=quiet, desc=f"export {export.pk} ({export.format})"
        )
        while True:
            export.refresh_from_db()
            bar.total = export.images_total
            bar.update(export.images_done - bar.n)
            if export.status not in UNFINISHED:
                break
            time.sleep(interval)
        bar.close()
        return export

    def _report(self, export: Export) -> None:
        if export.status != JobStatus.DONE:
            raise CommandError(f"export {export.pk} is {export.status}: {export.error}")
        folder = services.export_dir(export)
        for entry in export.files:
            self.stdout.write(f"{folder / entry['file']}  {entry['bytes']} bytes  sha256 {entry['sha256']}")
        self.stdout.write(
            self.style.SUCCESS(f"export {export.pk}: {export.images_done} images, {export.masks_done} masks")
        )
