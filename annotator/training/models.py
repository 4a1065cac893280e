"""Model versions (checkpoints the engine can load) and the training runs that produce them."""

from __future__ import annotations

import hashlib
import json

from django.conf import settings
from django.db import models

from annotator.jobs import JobStatus  # also imported from here by older code


class ModelFamily(models.TextChoices):
    VIT_B = "vit_b", "SAM ViT-B"
    VIT_L = "vit_l", "SAM ViT-L"
    VIT_H = "vit_h", "SAM ViT-H"
    VIT_T = "vit_t", "MobileSAM TinyViT"
    CUSTOM = "custom", "Custom sizes"


class ModelStatus(models.TextChoices):
    CANDIDATE = "candidate", "Candidate"
    ACTIVE = "active", "Active"
    RETIRED = "retired", "Retired"


def model_key(family: str, checkpoint: str, config: dict) -> str:
    """Identity of a model: same family, checkpoint and sizes → same row (found, not re-created)."""
    payload = json.dumps([family, checkpoint, config], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


class ModelVersion(models.Model):
    family = models.CharField(max_length=16, choices=ModelFamily.choices)
    name = models.CharField(max_length=200, blank=True)
    checkpoint = models.CharField(max_length=1000, blank=True, help_text="path or storage name")
    checkpoint_sha256 = models.CharField(max_length=64, blank=True)
    config = models.JSONField(default=dict, blank=True)
    key = models.CharField(max_length=64, unique=True, editable=False)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    # The version whose image encoder this one runs: its parent's (or further up) when training
    # changed only the decoder, so stored embeddings are looked up by it and stay valid. Null: its own.
    encoder = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="decoder_versions"
    )
    # The project whose training run made it (null: registered by hand or from the settings).
    project = models.ForeignKey(
        "projects.Project", null=True, blank=True, on_delete=models.SET_NULL, related_name="model_versions"
    )
    metrics = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=ModelStatus.choices, default=ModelStatus.CANDIDATE)
    status_reason = models.TextField(blank=True, help_text="why it is (or is not) active")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(family__in=ModelFamily.values), name="modelversion_family_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=ModelStatus.values), name="modelversion_status_valid"
            ),
        ]

    def save(self, *args, **kwargs) -> None:
        self.key = model_key(self.family, self.checkpoint, self.config)
        super().save(*args, **kwargs)

    def __str__(self) -> str:
        return self.name or f"{self.family} #{self.pk}"

    @property
    def embedding_version_id(self) -> int | None:
        """The version stored embeddings of this one are filed under: its encoder's owner."""
        return self.encoder_id or self.pk


class TrainingTrigger(models.TextChoices):
    SCHEDULE = "schedule", "Schedule"
    THRESHOLD = "threshold", "New accepted masks threshold"
    MANUAL = "manual", "Manual"


class TrainingRun(models.Model):
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="training_runs")
    trigger = models.CharField(max_length=16, choices=TrainingTrigger.choices, default=TrainingTrigger.MANUAL)
    base_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="training_runs_from"
    )
    result_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="training_runs_to"
    )
    parameters = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.PENDING)
    metrics = models.JSONField(default=dict, blank=True)
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    reason = models.TextField(blank=True, help_text="the outcome in words: promoted, kept as candidate, why")
    progress = models.FloatField(default=0.0)
    attempts = models.PositiveIntegerField(
        default=0, help_text="starts, counting restarts after a lost worker"
    )
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    masks_since = models.DateTimeField(null=True, blank=True, help_text="accepted masks after this went in")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["project", "status"], name="trainingrun_project_status")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=JobStatus.values), name="trainingrun_status_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(trigger__in=TrainingTrigger.values), name="trainingrun_trigger_valid"
            ),
            # One run per project at a time, held by the database whatever asks at once.
            models.UniqueConstraint(
                fields=["project"],
                condition=models.Q(status__in=["pending", "running"]),
                name="trainingrun_one_open_per_project",
            ),
        ]


class PromotionKind(models.TextChoices):
    GATED = "gated", "Promoted by its evaluation"
    MANUAL = "manual", "Promoted by hand"
    ROLLBACK = "rollback", "Rolled back"


class ModelPromotion(models.Model):
    """Each change of a project's active version, so a rollback knows where to go back to and the
    page shows who changed what."""

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="promotions")
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="promotions")
    previous = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    kind = models.CharField(max_length=16, choices=PromotionKind.choices)
    reason = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind__in=PromotionKind.values), name="modelpromotion_kind_valid"
            ),
        ]
