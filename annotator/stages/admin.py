from django.contrib import admin

from annotator.stages.models import GenerationItem, GenerationRun


@admin.register(GenerationRun)
class GenerationRunAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "mode", "status", "done", "failed", "total", "created_at"]


admin.site.register(GenerationItem)
