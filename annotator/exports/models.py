"""Exports (SA-1B shards, COCO, Label Studio, PNG masks) and their manifests."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from annotator.jobs import JobStatus


class ExportFormat(models.TextChoices):
    SA1B = "sa1b", "SA-1B shards"
    COCO = "coco", "COCO instances"
    LABEL_STUDIO = "label_studio", "Label Studio tasks"
    PNG = "png", "PNG masks"


class Export(models.Model):
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="exports")
    format = models.CharField(max_length=16, choices=ExportFormat.choices)
    filter = models.JSONField(default=dict, blank=True, help_text="which images and masks")
    options = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.PENDING)
    progress = models.FloatField(default=0.0, help_text="images_done / images_total")
    images_total = models.PositiveIntegerField(default=0)
    images_done = models.PositiveIntegerField(default=0)
    masks_done = models.PositiveIntegerField(default=0)
    out_dir = models.CharField(
        max_length=1000,
        blank=True,
        help_text="where the command wrote it; blank = the platform's export folder",
    )
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid of the process writing it")
    started_at = models.DateTimeField(null=True, blank=True)
    files = models.JSONField(default=list, blank=True, help_text="storage names of the written files")
    manifest = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["project", "status"], name="export_project_status")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=JobStatus.values), name="export_status_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(format__in=ExportFormat.values), name="export_format_valid"
            ),
        ]
