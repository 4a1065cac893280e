"""A project's link to a Label Studio project, and the id mapping that makes sync idempotent."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Connection(models.Model):
    """Where the project's Label Studio is and how to reach it. ``url`` is also the only host the
    backend fetches task images from; ``token`` is stored for the server's own calls and never
    shown again."""

    project = models.OneToOneField("projects.Project", on_delete=models.CASCADE, related_name="labelstudio")
    url = models.URLField(max_length=500, help_text="Label Studio's base URL, e.g. http://ls.example:8080")
    token = models.CharField(
        max_length=2000, help_text="Label Studio API token (legacy or personal access token)"
    )
    ls_project_id = models.PositiveBigIntegerField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_push_at = models.DateTimeField(null=True, blank=True)
    last_pull_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.project} ↔ {self.url} project {self.ls_project_id}"


class TaskLink(models.Model):
    """One Label Studio task is one Maskmill image (two tasks may show the same image: Label Studio
    allows duplicate tasks, Maskmill keeps one copy of the bytes); what was last pushed for it (so
    a second push with nothing changed sends nothing)."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="tasks")
    image = models.ForeignKey("images.Image", on_delete=models.CASCADE, related_name="labelstudio_tasks")
    ls_task_id = models.PositiveBigIntegerField()
    pushed_kind = models.CharField(max_length=16, blank=True, help_text="prediction or annotation")
    pushed_ls_id = models.PositiveBigIntegerField(null=True, blank=True)
    pushed_digest = models.CharField(max_length=40, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["connection", "ls_task_id"], name="ls_task_once"),
        ]


class MaskLink(models.Model):
    """One region of a Label Studio annotation is one Maskmill mask; ``digest`` is the region as
    last seen, so an unchanged region is not written again."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="masks")
    task = models.ForeignKey(TaskLink, on_delete=models.CASCADE, related_name="masks")
    ls_annotation_id = models.PositiveBigIntegerField()
    region_id = models.CharField(max_length=100)
    mask = models.ForeignKey("masks.Mask", on_delete=models.CASCADE, related_name="labelstudio_links")
    digest = models.CharField(max_length=40)
    ls_annotator = models.CharField(
        max_length=254, blank=True, help_text="Label Studio user (email) who drew it"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "ls_annotation_id", "region_id"], name="ls_region_once"
            ),
        ]
        indexes = [models.Index(fields=["connection", "ls_annotation_id"], name="ls_annotation")]
