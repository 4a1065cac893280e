"""Keeps annotation sessions' mask counts in step with the masks the platform's API stores."""

from __future__ import annotations

from django.db.models.signals import post_save
from django.dispatch import receiver

from annotator.masks.models import Mask


@receiver(post_save, sender=Mask, dispatch_uid="annotation-count-saved-mask")
def count_saved_mask(sender, instance: Mask, created: bool, **kwargs) -> None:
    if created and not kwargs.get("raw"):
        from annotator.annotation.services import count_saved_mask as count

        count(instance)
