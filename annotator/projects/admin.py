from django.contrib import admin

from annotator.projects.models import Label, Membership, Project


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1


class LabelInline(admin.TabularInline):
    model = Label
    extra = 1


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "stage", "active_model_version", "created_at"]
    search_fields = ["name", "slug"]
    inlines = [MembershipInline, LabelInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["project", "user", "role"]
    list_filter = ["role"]
