"""What stages 2 and 3 record: automatic-generation runs with one item per image (the unit of
idempotent, resumable work), and where a pre-filled mask came from."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.conf import settings
from django.db import models

from annotator.jobs import JobStatus


class GenerationMode(models.TextChoices):
    SEMI = "semi", "Semi-automatic pre-fill"
    AUTO = "auto", "Fully automatic"


class GenerationRun(models.Model):
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="generation_runs")
    mode = models.CharField(max_length=8, choices=GenerationMode.choices)
    model_version = models.ForeignKey(
        "training.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="generation_runs",
    )
    parameters = models.JSONField(default=dict, blank=True)
    filter = models.JSONField(default=dict, blank=True, help_text="which images: status, split, ids")
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.PENDING)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["project", "status"], name="genrun_project_status")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=JobStatus.values), name="genrun_status_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(mode__in=GenerationMode.values), name="genrun_mode_valid"
            ),
        ]


class GenerationItem(models.Model):
    run = models.ForeignKey(GenerationRun, on_delete=models.CASCADE, related_name="items")
    image = models.ForeignKey("images.Image", on_delete=models.CASCADE, related_name="generation_items")
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    mask_count = models.PositiveIntegerField(default=0)
    seconds = models.FloatField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "image"], name="genitem_one_per_image_and_run"),
            models.CheckConstraint(
                condition=models.Q(status__in=JobStatus.values), name="genitem_status_valid"
            ),
        ]
        indexes = [models.Index(fields=["run", "status"], name="genitem_run_status")]


class PrefillOrigin(models.Model):
    """What a semi-automatic pre-fill mask looked like when the model proposed it, so the per-image
    report can tell a mask accepted as proposed ("kept") from one an annotator edited ("fixed")."""

    mask = models.OneToOneField(
        "masks.Mask", primary_key=True, on_delete=models.CASCADE, related_name="prefill_origin"
    )
    segmentation_sha1 = models.CharField(max_length=40)


def segmentation_sha1(rle: dict[str, Any]) -> str:
    """The fingerprint PrefillOrigin keeps of a pre-filled mask's segmentation (kept vs. fixed)."""
    return hashlib.sha1(json.dumps(rle, sort_keys=True).encode()).hexdigest()
