from django.contrib import admin

from annotator.masks.models import Mask


@admin.register(Mask)
class MaskAdmin(admin.ModelAdmin):
    list_display = ["id", "image", "label", "source", "status", "area", "annotator", "version"]
    list_filter = ["source", "status"]
    raw_id_fields = [
        "image",
        "project",
        "label",
        "model_version",
        "generation_item",
        "annotator",
        "reviewed_by",
    ]
