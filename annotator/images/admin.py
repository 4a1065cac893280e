from django.contrib import admin

from annotator.images.models import Embedding, Image


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "original_name", "width", "height", "split", "status"]
    list_filter = ["project", "split", "status"]
    search_fields = ["original_name", "sha256"]
    raw_id_fields = ["leased_by", "uploaded_by"]


@admin.register(Embedding)
class EmbeddingAdmin(admin.ModelAdmin):
    list_display = ["id", "image", "model_version", "dtype", "created_at"]
