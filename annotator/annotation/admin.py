from django.contrib import admin

from annotator.annotation.models import AnnotationSession


@admin.register(AnnotationSession)
class AnnotationSessionAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "image", "annotator", "started_at", "ended_at", "clicks", "masks"]
