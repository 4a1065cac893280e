"""Export jobs: create (filter and options checked), run (the same code for the ``export`` task and
the command's foreground run), cancel, resume, and the files a download may serve.

A run holds an exclusive ``flock`` on its folder, which the kernel drops when the process dies, so
a redelivered task or a resume never writes beside a live run and never waits for a dead one. A
killed SA-1B run resumes at its first incomplete shard (``engine.sa1b``); finished shards are
checked by sha256 and kept.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from annotator.exports import selectors
from annotator.exports.models import Export, ExportFormat
from annotator.exports.writers import WRITERS, Context
from annotator.jobs import UNFINISHED, JobStatus
from annotator.projects.models import Label, Project

log = logging.getLogger(__name__)

LOCK_NAME = ".export.lock"
PROGRESS_EVERY_SECONDS = 0.5


class ExportCancelled(Exception):
    """The export was cancelled while it was running."""


def parse_options(fmt: str, data: Any) -> dict[str, Any]:
    """The options of a format, checked; unknown keys are refused so a typo is not ignored."""
    if data in (None, ""):
        data = {}
    if not isinstance(data, dict):
        raise ValidationError({"options": "must be an object"})
    allowed = {
        ExportFormat.SA1B: {"shard_size", "max_side", "blur_faces", "blur_plates"},
        ExportFormat.COCO: {"coco_polygons"},
        ExportFormat.LABEL_STUDIO: {"image_url"},
        ExportFormat.PNG: set(),
    }[fmt]
    errors = {
        key: f"not an option of {fmt} (options: {', '.join(sorted(allowed)) or 'none'})"
        for key in set(data) - allowed
    }
    out: dict[str, Any] = {}
    for key in ("blur_faces", "blur_plates", "coco_polygons"):
        if key in allowed and data.get(key) not in (None, ""):
            value = data[key]
            if isinstance(value, str) and value.lower() in (
                "1",
                "true",
                "on",
                "yes",
                "0",
                "false",
                "off",
                "no",
            ):
                value = value.lower() in ("1", "true", "on", "yes")
            if not isinstance(value, bool):
                errors[key] = "must be true or false"
            elif value:
                out[key] = True
    for key, low, high, default in (("shard_size", 1, 100_000, 1000), ("max_side", 16, 20_000, None)):
        if key not in allowed:
            continue
        value = data.get(key)
        if value in (None, ""):
            if default is not None:
                out[key] = default
            continue
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = None
        if (
            isinstance(value, bool)
            or number is None
            or str(number) != str(value).strip()
            or not low <= number <= high
        ):
            errors[key] = f"must be a whole number from {low} to {high}"
        else:
            out[key] = number
    if "image_url" in allowed and data.get("image_url") not in (None, ""):
        template = data["image_url"]
        if (
            not isinstance(template, str)
            or len(template) > 500
            or not any(p in template for p in ("{file_name}", "{image_id}"))
        ):
            errors["image_url"] = "a URL template of at most 500 characters with {file_name} or {image_id}"
        else:
            try:
                template.format(file_name="x", image_id=1)
            except (KeyError, IndexError, ValueError):
                errors["image_url"] = "only {file_name} and {image_id} may appear in braces"
            else:
                out["image_url"] = template
    if errors:
        raise ValidationError(errors)
    return out


def create_export(
    project: Project,
    fmt: str,
    *,
    filter_data: Any = None,
    options: Any = None,
    user: AbstractBaseUser | None = None,
    out_dir: str | os.PathLike | None = None,
    enqueue: bool = True,
) -> Export:
    if fmt not in ExportFormat.values:
        raise ValidationError({"format": f"one of {', '.join(ExportFormat.values)}"})
    flt = selectors.parse_filter(filter_data)
    opts = parse_options(fmt, options)
    export = Export.objects.create(
        project=project,
        format=fmt,
        filter=flt,
        options=opts,
        out_dir=str(Path(out_dir).resolve()) if out_dir else "",
        created_by=user if user is not None and user.is_authenticated else None,
        images_total=selectors.images_of(project, flt).count(),
    )
    if enqueue:
        _enqueue(export)
    return export


def _enqueue(export: Export) -> None:
    from annotator.exports.tasks import run_export_task

    transaction.on_commit(lambda: run_export_task.delay(export.pk))


def export_dir(export: Export) -> Path:
    return Path(export.out_dir) if export.out_dir else Path(settings.MASKMILL_EXPORT_DIR) / str(export.pk)


def cancel_export(export: Export) -> Export:
    """Stop at the next progress update; the files already written stay (a resume reuses them)."""
    Export.objects.filter(pk=export.pk, status__in=UNFINISHED).update(
        status=JobStatus.CANCELLED, finished_at=timezone.now()
    )
    export.refresh_from_db()
    return export


def resume_export(export: Export, enqueue: bool = True) -> Export:
    """Queue a cancelled, failed or stalled export again; it continues where its files stop."""
    if export.status == JobStatus.DONE:
        raise ValidationError({"status": "the export is done; nothing to resume"})
    Export.objects.filter(pk=export.pk).update(status=JobStatus.PENDING, error="", finished_at=None)
    export.refresh_from_db()
    if enqueue:
        _enqueue(export)
    return export


class _FolderLock:
    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(folder / LOCK_NAME, os.O_CREAT | os.O_RDWR, 0o600)

    def try_acquire(self) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            return False
        return True

    def release(self) -> None:
        os.close(self.fd)  # closing drops the lock


def run_export(
    export_id: int, worker: str = "", on_progress: Callable[[Export], None] | None = None
) -> Export:
    """Write the export (or the rest of it). Returns the row as it ends: done, failed, cancelled,
    or untouched when another live process holds it or it is already finished."""
    export = Export.objects.select_related("project").get(pk=export_id)
    if export.status in (JobStatus.DONE, JobStatus.CANCELLED):
        return export
    folder = export_dir(export)
    lock = _FolderLock(folder)
    if not lock.try_acquire():
        log.info("export %s is being written by another process", export.pk)
        return export
    try:
        return _run_locked(export, folder, worker or f"{socket.gethostname()}:{os.getpid()}", on_progress)
    finally:
        lock.release()


def _run_locked(
    export: Export, folder: Path, worker: str, on_progress: Callable[[Export], None] | None
) -> Export:
    project = export.project
    total = selectors.images_of(project, export.filter).count()
    started = Export.objects.filter(pk=export.pk, status__in=UNFINISHED).update(
        status=JobStatus.RUNNING, worker=worker, started_at=timezone.now(), images_total=total, images_done=0,
        masks_done=0, progress=0.0, error="",
    )  # fmt: skip
    if not started:  # cancelled in the meantime
        export.refresh_from_db()
        return export
    export.refresh_from_db()
    labels = {
        pk: (name, color)
        for pk, name, color in Label.objects.filter(project=project).values_list("pk", "name", "color")
    }
    ctx = Context(project.slug, labels, export.options)
    writer = WRITERS[export.format](ctx, folder)
    try:
        files, manifest = writer.write(
            _counted(export, selectors.iter_batches(project, export.filter), on_progress)
        )
    except ExportCancelled:
        export.refresh_from_db()
        return export
    except Exception as exc:
        from annotator.jobs import TRANSIENT_ERRORS

        if isinstance(exc, TRANSIENT_ERRORS):
            raise  # the task retries; the files written so far are reused
        log.exception("export %s failed", export.pk)
        Export.objects.filter(pk=export.pk).update(
            status=JobStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000], finished_at=timezone.now()
        )
        export.refresh_from_db()
        return export
    manifest = {**manifest, "filter": export.filter, "options": export.options, "format": export.format}
    Export.objects.filter(pk=export.pk, status=JobStatus.RUNNING).update(
        status=JobStatus.DONE, files=files, manifest=manifest, progress=1.0, finished_at=timezone.now()
    )
    export.refresh_from_db()
    if on_progress is not None:
        on_progress(export)
    return export


def _counted(
    export: Export, batches: Iterator[tuple[Any, list]], on_progress: Callable[[Export], None] | None
) -> Iterator[tuple[Any, list]]:
    """The batches, counting images and masks into the row about twice a second, and stopping
    (ExportCancelled) when the row says cancelled."""
    done = masks = 0
    last = time.monotonic()
    for row, image_masks in batches:
        yield row, image_masks
        done += 1
        masks += len(image_masks)
        if time.monotonic() - last >= PROGRESS_EVERY_SECONDS:
            last = time.monotonic()
            _save_progress(export, done, masks)
            if on_progress is not None:
                on_progress(export)
    _save_progress(export, done, masks)


def _save_progress(export: Export, done: int, masks: int) -> None:
    export.images_done, export.masks_done = done, masks
    export.progress = done / export.images_total if export.images_total else 1.0
    updated = Export.objects.filter(pk=export.pk, status=JobStatus.RUNNING).update(
        images_done=done, masks_done=masks, progress=export.progress
    )
    if not updated:
        raise ExportCancelled


def download_path(export: Export, name: str) -> Path | None:
    """The file ``name`` of a finished export, if the export lists it and it is on disk."""
    if export.status != JobStatus.DONE or name not in {f["file"] for f in export.files}:
        return None
    path = export_dir(export) / name
    return path if path.is_file() else None
