"""Files follow their rows: when an Image or Embedding row is deleted (one image, or a whole
project through the cascade, from the API, the admin or a command), its file is deleted through
the storage API (so object storage works too) once the deletion is committed; a rolled-back
deletion keeps its files."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from annotator.images.models import Embedding, Image

log = logging.getLogger(__name__)


def delete_file_after_commit(field_file: Any) -> None:
    if not field_file:
        return
    storage, name = field_file.storage, field_file.name

    def delete() -> None:
        try:
            storage.delete(name)
        except Exception:
            log.exception("could not delete %s from storage", name)

    transaction.on_commit(delete)


@receiver(post_delete, sender=Image, dispatch_uid="images-delete-image-file")
@receiver(post_delete, sender=Embedding, dispatch_uid="images-delete-embedding-file")
def _delete_file(sender: type, instance: Image | Embedding, **_: Any) -> None:
    delete_file_after_commit(instance.file)
