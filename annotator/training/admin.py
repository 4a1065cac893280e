from django.contrib import admin

from annotator.training.models import ModelPromotion, ModelVersion, TrainingRun


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "name",
        "family",
        "checkpoint",
        "status",
        "parent",
        "encoder",
        "project",
        "created_at",
    ]
    list_filter = ["family", "status"]
    raw_id_fields = ["parent", "encoder", "project"]


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    """Read-mostly: runs are started and stopped through the API, page or ``manage.py train``."""

    list_display = [
        "id",
        "project",
        "trigger",
        "status",
        "attempts",
        "result_version",
        "reason",
        "created_at",
    ]
    list_filter = ["status", "trigger"]
    raw_id_fields = ["project", "base_version", "result_version", "created_by"]


@admin.register(ModelPromotion)
class ModelPromotionAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "kind", "version", "previous", "created_by", "created_at"]
    list_filter = ["kind"]
    raw_id_fields = ["project", "version", "previous", "created_by"]
