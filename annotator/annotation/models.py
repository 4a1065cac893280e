"""Stage 1's own record: one row per annotator visit to an image (time, clicks, masks saved), the
figures the dashboard's effort charts are made of. Leases live on ``images.Image``, and the claim
on computing an embedding is ``images.EmbeddingClaim`` (the images app owns embeddings)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class AnnotationSession(models.Model):
    """One annotator's visit to one image: time, clicks and masks saved."""

    project = models.ForeignKey(
        "projects.Project", on_delete=models.CASCADE, related_name="annotation_sessions"
    )
    image = models.ForeignKey("images.Image", on_delete=models.CASCADE, related_name="annotation_sessions")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="annotation_sessions"
    )
    model_version = models.ForeignKey(
        "training.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    clicks = models.PositiveIntegerField(default=0)
    masks = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "stages_annotationsession"  # the table it had when stages owned it
        ordering = ["id"]
        indexes = [
            models.Index(fields=["project", "annotator", "started_at"], name="session_project_annotator"),
            models.Index(fields=["image", "started_at"], name="session_image"),
        ]
