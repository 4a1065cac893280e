"""The exports page (managers only): start an export with the same filter and options as the API
and the command, watch its progress (the page refreshes itself while one runs), cancel or resume
it, and download its files through the permission-checking view."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.http import require_POST

from annotator import params  # noqa: F401 - registers the <id:...> converter
from annotator.exports import services
from annotator.exports.api import download_response
from annotator.exports.models import Export, ExportFormat
from annotator.exports.selectors import LIST_KEYS
from annotator.jobs import UNFINISHED
from annotator.projects.access import MANAGERS, get_checked, get_project

TEXT_KEYS = ("labels", "model_version", "min_predicted_iou", "min_stability", "created_after")
OPTION_KEYS = ("shard_size", "max_side", "blur_faces", "blur_plates", "coco_polygons", "image_url")


def form_filter(post) -> dict:
    """The page's form fields as the filter dict the parser takes (lists from checkboxes)."""
    data = {key: post.getlist(key) for key in LIST_KEYS if post.getlist(key)}
    data.update({key: post[key] for key in TEXT_KEYS if post.get(key, "").strip()})
    return data


def form_options(post, fmt: str) -> dict:
    data = {key: post[key] for key in OPTION_KEYS if post.get(key, "").strip()}
    per_format = {
        "sa1b": {"shard_size", "max_side", "blur_faces", "blur_plates"},
        "coco": {"coco_polygons"},
        "label_studio": {"image_url"},
        "png": set(),
    }.get(fmt, set())
    return {key: value for key, value in data.items() if key in per_format}


@login_required
def exports_page(request: HttpRequest, pk: int) -> HttpResponse:
    project = get_project(request.user, pk, MANAGERS)
    if request.method == "POST":
        fmt = request.POST.get("format", "")
        try:
            export = services.create_export(
                project, fmt, filter_data=form_filter(request.POST), options=form_options(request.POST, fmt),
                user=request.user,
            )  # fmt: skip
        except ValidationError as exc:
            messages.error(request, "; ".join(f"{k}: {', '.join(v)}" for k, v in exc.message_dict.items()))
        else:
            messages.success(request, f"Export {export.pk} queued ({export.images_total} images).")
        return redirect("exports-page", pk=pk)
    exports = list(Export.objects.filter(project=project).order_by("-id")[:30])
    return render(
        request,
        "exports/exports.html",
        {
            "project": project,
            "exports": exports,
            "formats": ExportFormat.choices,
            "choices": {key: values for key, values in LIST_KEYS.items()},
            "labels": list(project.labels.values_list("name", flat=True)),
            "refresh": any(e.status in UNFINISHED for e in exports),
        },
    )


@login_required
@require_POST
def cancel_page(request: HttpRequest, pk: int) -> HttpResponse:
    export = get_checked(Export.objects.all(), request.user, MANAGERS, pk=pk)
    services.cancel_export(export)
    return redirect("exports-page", pk=export.project_id)


@login_required
@require_POST
def resume_page(request: HttpRequest, pk: int) -> HttpResponse:
    export = get_checked(Export.objects.all(), request.user, MANAGERS, pk=pk)
    try:
        services.resume_export(export)
    except ValidationError as exc:
        messages.error(request, "; ".join(exc.messages))
    return redirect("exports-page", pk=export.project_id)


@login_required
def download_page(request: HttpRequest, pk: int, name: str) -> FileResponse:
    return download_response(get_checked(Export.objects.all(), request.user, MANAGERS, pk=pk), name)


urlpatterns = [
    path("projects/<id:pk>/exports/", exports_page, name="exports-page"),
    path("exports/<id:pk>/cancel/", cancel_page, name="export-cancel-page"),
    path("exports/<id:pk>/resume/", resume_page, name="export-resume-page"),
    path("exports/<id:pk>/download/<str:name>", download_page, name="export-download"),
]
