"""Serving image bytes to members only: the original, or a small JPEG thumbnail."""

from __future__ import annotations

import io

from django.core.files.storage import FileSystemStorage
from django.http import FileResponse, HttpResponse, HttpResponseBase, HttpResponseRedirect
from PIL import Image as PILImage

from annotator.images.models import Image
from engine.images import open_image, upright_rgb

MAX_THUMBNAIL = 1024
MAX_THUMBNAIL_REQUEST = 1_000_000  # larger asks are refused; up to it they get MAX_THUMBNAIL
CONTENT_TYPES = {
    "jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif", "bmp": "image/bmp",
    "tif": "image/tiff", "tiff": "image/tiff", "webp": "image/webp",
}  # fmt: skip


def original_response(image: Image) -> HttpResponseBase:
    """The stored bytes. Object storage answers with a short-lived signed URL instead of proxying."""
    storage = image.file.storage
    if not isinstance(storage, FileSystemStorage):
        return HttpResponseRedirect(storage.url(image.file.name))
    suffix = image.file.name.rsplit(".", 1)[-1].lower()
    response = FileResponse(
        image.file.open("rb"), content_type=CONTENT_TYPES.get(suffix, "application/octet-stream")
    )
    response["Cache-Control"] = "private, max-age=3600"
    return response


def thumbnail_response(image: Image, size: int) -> HttpResponse:
    """A JPEG at most ``size`` px on its longer side, EXIF orientation applied like everywhere else."""
    size = max(16, min(size, MAX_THUMBNAIL))
    with image.file.open("rb") as fileobj:
        picture = upright_rgb(open_image(fileobj.read()))
    picture.thumbnail((size, size), PILImage.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=85)
    response = HttpResponse(buffer.getvalue(), content_type="image/jpeg")
    response["Cache-Control"] = "private, max-age=3600"
    return response
