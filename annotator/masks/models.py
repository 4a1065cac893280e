"""Masks: COCO RLE with the geometry, scores and provenance SA-1B records."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models


class MaskSource(models.TextChoices):
    MANUAL = "manual", "Assisted-manual"
    SEMI = "semi", "Semi-automatic"
    AUTO = "auto", "Fully automatic"


class MaskStatus(models.TextChoices):
    PROPOSED = "proposed", "Proposed"
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"


class Mask(models.Model):
    # ``project`` repeats image.project so the database can check that the label is the project's
    # (composite foreign keys in migration 0002) and so per-project queries need no join.
    # Their lookups are served by the composite indexes below (fewer indexes to update on bulk inserts).
    project = models.ForeignKey(
        "projects.Project", on_delete=models.CASCADE, related_name="masks", db_index=False
    )
    image = models.ForeignKey("images.Image", on_delete=models.CASCADE, related_name="masks", db_index=False)
    segmentation = models.JSONField(help_text='COCO RLE {"size": [h, w], "counts": str}')
    bbox = models.JSONField(help_text="[x, y, w, h]")
    area = models.PositiveIntegerField()
    predicted_iou = models.FloatField(null=True, blank=True)
    stability_score = models.FloatField(null=True, blank=True)
    point_coords = models.JSONField(null=True, blank=True, help_text="[[x, y], ...] prompt points")
    crop_box = models.JSONField(null=True, blank=True, help_text="[x, y, w, h]")
    label = models.ForeignKey(
        "projects.Label", null=True, blank=True, on_delete=models.SET_NULL, related_name="masks"
    )
    # The label the head suggested when the mask was made (kept = label == suggested_label): a data
    # engine metric, like seconds and clicks.
    suggested_label = models.ForeignKey(
        "projects.Label", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    suggestion_probability = models.FloatField(null=True, blank=True)
    source = models.CharField(max_length=8, choices=MaskSource.choices, default=MaskSource.MANUAL)
    status = models.CharField(max_length=16, choices=MaskStatus.choices, default=MaskStatus.PROPOSED)
    model_version = models.ForeignKey(
        "training.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="masks"
    )
    generation_item = models.ForeignKey(
        "stages.GenerationItem", null=True, blank=True, on_delete=models.SET_NULL, related_name="masks"
    )
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="masks"
    )
    seconds = models.FloatField(null=True, blank=True)
    clicks = models.PositiveIntegerField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1, help_text="bumped on every change (optimistic locking)")
    # The client's Idempotency-Key of the create request: a retried save finds this mask again.
    idempotency_key = models.CharField(max_length=100, null=True, blank=True, editable=False)
    review_note = models.TextField(blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(source__in=MaskSource.values), name="mask_source_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=MaskStatus.values), name="mask_status_valid"
            ),
            models.CheckConstraint(condition=models.Q(version__gte=1), name="mask_version_positive"),
            models.UniqueConstraint(
                fields=["annotator", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="mask_idempotency_key_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["image", "status"], name="mask_image_status"),
            # Accepted masks since a time (retraining trigger, exports).
            models.Index(fields=["project", "status", "accepted_at"], name="mask_project_accepted"),
            models.Index(fields=["project", "source", "status"], name="mask_project_source"),
            models.Index(fields=["annotator", "created_at"], name="mask_annotator_created"),
        ]

    def clean(self) -> None:
        if (
            self.image_id is not None
            and self.project_id is not None
            and self.image.project_id != self.project_id
        ):
            raise ValidationError({"image": "the image belongs to another project than the mask"})
        if self.label_id is not None and self.label.project_id != (self.project_id or self.image.project_id):
            raise ValidationError({"label": "the label belongs to another project than the mask's image"})
