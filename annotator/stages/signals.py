"""Images that arrive in a semi-automatic project are pre-filled like the ones already there."""

from __future__ import annotations

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from annotator.images.models import Image
from annotator.projects.models import Stage


@receiver(post_save, sender=Image, dispatch_uid="stages-prefill-new-images")
def prefill_on_ingest(sender, instance: Image, created: bool, raw: bool = False, **kwargs) -> None:
    if not created or raw:
        return
    if instance.stage and instance.stage != Stage.SEMI_AUTOMATIC:
        return
    if (
        not instance.stage
        and not Image.objects.filter(pk=instance.pk, project__stage=Stage.SEMI_AUTOMATIC).exists()
    ):
        return
    from annotator.stages.services import prefill_new_images

    project_id, image_id = instance.project_id, instance.pk
    transaction.on_commit(lambda: prefill_new_images(project_id, [image_id]), robust=True)
