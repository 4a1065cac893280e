"""Projects, their label sets and who may do what in them."""

from __future__ import annotations

import copy
from typing import Any

from django.conf import settings as django_settings
from django.db import models


class Stage(models.TextChoices):
    ASSISTED_MANUAL = "assisted_manual", "Assisted-manual"
    SEMI_AUTOMATIC = "semi_automatic", "Semi-automatic"
    FULLY_AUTOMATIC = "fully_automatic", "Fully automatic"


class Role(models.TextChoices):
    MANAGER = "manager", "Manager"
    ANNOTATOR = "annotator", "Annotator"
    REVIEWER = "reviewer", "Reviewer"


# The official SamAutomaticMaskGenerator defaults (fully automatic stage) and stricter thresholds for
# the semi-automatic pre-fill; the stages read these from Project.settings["generation"].
DEFAULT_PROJECT_SETTINGS: dict[str, Any] = {
    "seconds_per_mask_hint": 30,
    "generation": {
        "semi_automatic": {
            "points_per_side": 32,
            "points_per_batch": 64,
            "pred_iou_thresh": 0.92,
            "stability_score_thresh": 0.97,
            "stability_score_offset": 1.0,
            "box_nms_thresh": 0.7,
            "crop_n_layers": 0,
            "crop_nms_thresh": 0.7,
            "crop_overlap_ratio": 512 / 1500,
            "crop_n_points_downscale_factor": 1,
            "min_mask_region_area": 100,
        },
        "fully_automatic": {
            "points_per_side": 32,
            "points_per_batch": 64,
            "pred_iou_thresh": 0.88,
            "stability_score_thresh": 0.95,
            "stability_score_offset": 1.0,
            "box_nms_thresh": 0.7,
            "crop_n_layers": 0,
            "crop_nms_thresh": 0.7,
            "crop_overlap_ratio": 512 / 1500,
            "crop_n_points_downscale_factor": 1,
            "min_mask_region_area": 0,
        },
    },
    "automatic_mask_status": "accepted",
    "training": {"accepted_masks_threshold": 0},
}


def default_project_settings() -> dict[str, Any]:
    return copy.deepcopy(DEFAULT_PROJECT_SETTINGS)


class Project(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    stage = models.CharField(max_length=32, choices=Stage.choices, default=Stage.ASSISTED_MANUAL)
    active_model_version = models.ForeignKey(
        "training.ModelVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="active_in"
    )
    settings = models.JSONField(default=default_project_settings, blank=True)
    created_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(stage__in=Stage.values), name="project_stage_valid")
        ]

    def __str__(self) -> str:
        return self.name

    def setting(self, key: str) -> Any:
        """A project setting, falling back to the default for keys the stored JSON lacks."""
        return self.settings.get(key, DEFAULT_PROJECT_SETTINGS.get(key))

    def generation_params(self, stage: str) -> dict[str, Any]:
        defaults = DEFAULT_PROJECT_SETTINGS["generation"][stage]
        return {**defaults, **self.settings.get("generation", {}).get(stage, {})}


class Membership(models.Model):
    user = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="membership_one_per_user"),
            models.CheckConstraint(condition=models.Q(role__in=Role.values), name="membership_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user} is {self.role} of {self.project}"


class Label(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="labels")
    name = models.CharField(max_length=100)
    color = models.CharField(max_length=7, default="#ff0000", help_text="#rrggbb")
    # Other words a manager accepts for this label in "find every <label>" (not open vocabulary).
    synonyms = models.JSONField(default=list, blank=True, help_text='["car", "automobile"]')

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="label_name_unique_in_project"),
            # Target of the (label, project) composite foreign key from masks (see masks migrations).
            models.UniqueConstraint(fields=["id", "project"], name="label_id_project"),
        ]

    def __str__(self) -> str:
        return self.name
