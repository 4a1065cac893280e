from django.contrib import admin

from annotator.labelstudio.models import Connection, MaskLink, TaskLink


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    list_display = ("project", "url", "ls_project_id", "last_push_at", "last_pull_at")
    exclude = ("token",)


admin.site.register(TaskLink)
admin.site.register(MaskLink)
