"""Image ingest: every file is read the one way (engine.images.read_image), refused with a reason
when it is not a usable image, skipped when the project already holds the same bytes, and stored
as the original bytes; each new image gets an ``embed`` task once its row is committed, and in a
semi-automatic project a pre-fill (``stages.services.prefill_ingested``)."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction

from annotator.images.models import Image
from annotator.projects.models import Project
from annotator.stages.services import prefill_ingested
from engine.images import ImageReadError, read_image

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024


class IngestRefused(ValueError):
    """A source that cannot be ingested; the message is the per-file reason shown to the user."""


@dataclass
class IngestResult:
    created: list[Image] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)  # {name, image}: the image already there
    errors: list[dict[str, str]] = field(default_factory=list)  # {name, reason}

    def as_dict(self) -> dict[str, list]:
        return {
            "created": [
                {"id": img.pk, "name": img.original_name, "width": img.width, "height": img.height}
                for img in self.created
            ],
            "duplicates": self.duplicates,
            "errors": self.errors,
        }


Source = Any  # an uploaded/Django File, a pathlib.Path, or a str that is a path or an http(s) URL


def ingest_files(
    project: Project,
    files: Iterable[Source],
    user: AbstractBaseUser | None,
    on_each: Callable[[str, str], None] | None = None,
) -> IngestResult:
    """Ingest ``files`` into ``project``; returns what was created, skipped as duplicate, refused.

    One bad file never stops the batch. ``on_each(name, outcome)`` is called after every file
    (``outcome`` is ``created``, ``duplicate`` or ``error``) so callers can show progress.
    """
    result = IngestResult()
    for source in files:
        name = display_name(source)
        try:
            data, source_url = read_source(source)
            outcome = _ingest_one(project, name, data, source_url, user, result)
        except IngestRefused as exc:
            result.errors.append({"name": name, "reason": str(exc)})
            outcome = "error"
        if on_each is not None:
            on_each(name, outcome)
    prefill_ingested(project, [image.pk for image in result.created])
    return result


def _ingest_one(
    project: Project,
    name: str,
    data: bytes,
    source_url: str,
    user: AbstractBaseUser | None,
    result: IngestResult,
) -> str:
    sha256 = hashlib.sha256(data).hexdigest()
    existing = Image.objects.filter(project=project, sha256=sha256).values_list("pk", flat=True).first()
    if existing is not None:
        result.duplicates.append({"name": name, "image": existing, "sha256": sha256})
        return "duplicate"
    try:
        pixels = read_image(data, max_pixels=settings.MASKMILL_MAX_IMAGE_PIXELS)
    except ImageReadError as exc:
        raise IngestRefused(str(exc)) from exc
    height, width = int(pixels.shape[0]), int(pixels.shape[1])
    del pixels

    image = Image(
        project=project,
        original_name=name,
        source_url=source_url,
        sha256=sha256,
        size_bytes=len(data),
        width=width,
        height=height,
        uploaded_by=user if user is not None and user.is_authenticated else None,
    )
    image.file.save(storage_name(name), ContentFile(data), save=False)
    try:
        with transaction.atomic():
            image.save()
    except IntegrityError:
        # Another ingest stored the same bytes between our check and our insert.
        image.file.delete(save=False)
        other = Image.objects.filter(project=project, sha256=sha256).values_list("pk", flat=True).first()
        result.duplicates.append({"name": name, "image": other, "sha256": sha256})
        return "duplicate"
    queue_embedding(image.pk)
    result.created.append(image)
    return "created"


def queue_embedding(image_id: int) -> None:
    """Queue the ``embed`` task after the surrounding transaction commits (the worker must see the row).

    A broker that is down does not undo the ingest: the failure is logged and the embedding is
    computed on first use instead.
    """
    from annotator.images.tasks import embed

    transaction.on_commit(lambda: embed.delay(image_id), robust=True)


def storage_name(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return f"image{suffix if suffix and len(suffix) <= 6 and suffix[1:].isalnum() else ''}"


def display_name(source: Source) -> str:
    """The name shown back to the user: a base name only, never a path the client chose."""
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if is_url(text):
            return text
        return Path(text).name or text
    raw = getattr(source, "name", None) or "upload"
    return Path(str(raw).replace("\\", "/")).name or "upload"


def is_url(text: str) -> bool:
    return "://" in text


def read_source(source: Source) -> tuple[bytes, str]:
    """The bytes of a source (capped) and its URL when it came from one."""
    max_bytes = settings.MASKMILL_MAX_UPLOAD_BYTES
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if is_url(text):
            return fetch_url(text), text
        return read_local_file(Path(text), max_bytes), ""
    return read_capped(source, max_bytes), ""


def read_capped(fileobj: IO[bytes], max_bytes: int) -> bytes:
    size = getattr(fileobj, "size", None)
    if size is not None and size > max_bytes:
        raise IngestRefused(f"file is {size} bytes, over the {max_bytes} byte limit")
    if hasattr(fileobj, "seek"):
        fileobj.seek(0)
    data = fileobj.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise IngestRefused(f"file is over the {max_bytes} byte limit")
    if not data:
        raise IngestRefused("file is empty")
    return data


def read_local_file(path: Path, max_bytes: int) -> bytes:
    """A regular file only: no directories, devices, FIFOs or sockets (which could block or never end)."""
    try:
        info = path.stat()
    except FileNotFoundError as exc:
        raise IngestRefused("no such file") from exc
    except OSError as exc:
        raise IngestRefused(f"cannot read file: {exc.strerror}") from exc
    if stat.S_ISDIR(info.st_mode):
        raise IngestRefused("is a directory, not an image file")
    if not stat.S_ISREG(info.st_mode):
        raise IngestRefused("not a regular file (device, pipe or socket)")
    try:
        with path.open("rb") as fileobj:
            return read_capped(fileobj, max_bytes)
    except OSError as exc:
        raise IngestRefused(f"cannot read file: {exc.strerror}") from exc


def fetch_url(url: str) -> bytes:
    """GET an http(s) URL with a timeout and a size cap; other schemes are refused."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise IngestRefused(f"only http:// and https:// URLs can be fetched, not {parts.scheme or 'this'}://")
    max_bytes = settings.MASKMILL_URL_FETCH_MAX_BYTES
    timeout = settings.MASKMILL_URL_FETCH_TIMEOUT
    try:
        with requests.get(url, stream=True, timeout=timeout, allow_redirects=True) as response:
            if response.status_code != 200:
                raise IngestRefused(f"the server answered HTTP {response.status_code}")
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise IngestRefused(f"the server says {declared} bytes, over the {max_bytes} byte limit")
            chunks, total = [], 0
            for chunk in response.iter_content(CHUNK):
                total += len(chunk)
                if total > max_bytes:
                    raise IngestRefused(f"download is over the {max_bytes} byte limit")
                chunks.append(chunk)
    except requests.Timeout as exc:
        raise IngestRefused(f"fetching the URL timed out after {timeout} s") from exc
    except requests.RequestException as exc:
        raise IngestRefused(f"cannot fetch the URL: {exc.__class__.__name__}") from exc
    if total == 0:
        raise IngestRefused("the URL returned no data")
    return b"".join(chunks)


def expand_cli_sources(arguments: Iterable[str]) -> list[str]:
    """``ingest`` arguments → sources: paths, globs (``**`` recurses), folders (their image files),
    and ``.txt`` files listing one URL or path per line (relative paths from the list's folder)."""
    import glob

    sources: list[str] = []
    for argument in arguments:
        if is_url(argument):
            sources.append(argument)
        elif glob.has_magic(argument):
            matches = sorted(glob.glob(argument, recursive=True))
            sources.extend(m for m in matches if not Path(m).is_dir())
            if not matches:
                sources.append(argument)  # reported as "no such file"
        elif Path(argument).is_dir():
            sources.extend(
                str(p)
                for p in sorted(Path(argument).rglob("*"))
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        elif argument.lower().endswith(".txt") and Path(argument).is_file():
            base = Path(argument).resolve().parent
            for line in Path(argument).read_text(encoding="utf-8").splitlines():
                entry = line.strip()
                if not entry or entry.startswith("#"):
                    continue
                sources.append(entry if is_url(entry) else str(base / entry))
        else:
            sources.append(argument)
    return sources


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
