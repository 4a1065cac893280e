from django.contrib import admin

from annotator.training.models import ModelVersion, TrainingRun


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "family", "checkpoint", "status", "parent", "created_at"]
    list_filter = ["family", "status"]


admin.site.register(TrainingRun)
