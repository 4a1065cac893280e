"""Trained label heads: one row per training, gated like model versions."""

from __future__ import annotations

from django.db import models

from annotator.training.models import ModelStatus

# A head is gated, promoted and retired like a model version, with the same states.
HeadStatus = ModelStatus


class HeadTrigger(models.TextChoices):
    MANUAL = "manual", "Manual"
    LABELLED_MASKS = "labelled_masks", "New labelled masks"
    TRAINING_RUN = "training_run", "Training run"


class LabelHeadVersion(models.Model):
    """A label head (engine.labels.LabelHead, stored as its .npz bytes) for one project and one
    feature source: the model version whose stored embeddings it read, or none for the classic
    segmenter's pixel features. Small (tens of KiB), so it lives in the row, written atomically."""

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="label_heads")
    model_version = models.ForeignKey(
        "training.ModelVersion", null=True, blank=True, on_delete=models.CASCADE, related_name="label_heads"
    )
    kind = models.CharField(max_length=16, help_text="embedding or classic features")
    status = models.CharField(max_length=16, choices=HeadStatus.choices, default=HeadStatus.CANDIDATE)
    trigger = models.CharField(max_length=16, choices=HeadTrigger.choices, default=HeadTrigger.MANUAL)
    training_run = models.ForeignKey(
        "training.TrainingRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="label_heads"
    )
    data = models.BinaryField(help_text="engine.labels.LabelHead.to_bytes()")
    masks_trained = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(
        default=dict, blank=True, help_text="val split: top1, top3, per label, confusion"
    )
    reason = models.TextField(blank=True, help_text="why it was or was not promoted")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=HeadStatus.values), name="labelhead_status_valid"
            ),
        ]
        indexes = [models.Index(fields=["project", "status"], name="labelhead_project_status")]

    def __str__(self) -> str:
        return f"label head #{self.pk} of {self.project_id} ({self.status})"
