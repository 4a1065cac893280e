from django.contrib import admin

from annotator.exports.models import Export


@admin.register(Export)
class ExportAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "format", "status", "progress", "created_at"]
