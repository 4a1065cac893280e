"""Server-rendered pages of stage 1: the annotation page (frontend/annotate.html) reached through
the annotator's queue, the review page and the project dashboard."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from annotator.annotation import charts, selectors, services
from annotator.images.models import Image
from annotator.masks.models import Mask, MaskStatus
from annotator.masks.services import StaleVersion
from annotator.params import int_or_none, parse_id, parse_int
from annotator.projects.access import EDITORS, check_project_access, get_project, role_in
from annotator.projects.models import Role
from annotator.suggestions import selectors as suggestions_selectors
from annotator.training.pages import training_charts

REVIEWERS = (Role.MANAGER, Role.REVIEWER)


@login_required
@require_http_methods(["GET", "POST"])
def annotate_next(request: HttpRequest, pk: int) -> HttpResponse:
    """The annotator's queue. GET leases and opens the next image; POST ``done=<image>`` (the
    page's "next", CSRF-protected: a GET never changes state) finishes that image first, then
    redirects to the GET."""
    project = get_project(request.user, pk, EDITORS)
    if request.method == "POST":
        finished_id = int_or_none(request.POST.get("done"))
        finished = Image.objects.filter(pk=finished_id, project=project).first() if finished_id else None
        if finished is not None:
            services.finish_image(finished, request.user)
        return redirect("annotate-next", pk=project.pk)
    image = services.next_image(project, request.user)
    if image is None:
        return render(
            request, "annotation/queue_empty.html", {"project": project, "role": role_in(request.user, pk)}
        )
    return redirect("annotate-image", pk=image.pk)


@login_required
def annotate_image(request: HttpRequest, pk: int) -> HttpResponse:
    """The annotation page for one image; the visit leases it (or says who holds it)."""
    image = get_object_or_404(Image.objects.select_related("project"), pk=pk)
    check_project_access(request.user, image.project_id, EDITORS)
    holder = services.open_image(image, request.user)
    if holder is not None:
        return render(
            request,
            "annotation/busy.html",
            {"image": image, "holder": holder, "project": image.project},
            status=409,
        )
    services.start_session(image, request.user)
    services.prefetch_queue(image, request.user)
    previous = services.previous_image(image, request.user)
    project = image.project
    config: dict[str, Any] = {
        "imageId": image.pk,
        "projectId": project.pk,
        "csrfToken": get_token(request),
        "apiBase": "/api",
        "labels": [
            {"id": label.pk, "name": label.name, "color": label.color} for label in project.labels.all()
        ],
        "user": {"username": request.user.get_username(), "id": request.user.pk},
        # "next" POSTs these fields to nextImageUrl: this image is finished, the next one opened.
        "nextImageUrl": reverse("annotate-next", args=[project.pk]),
        "nextImageForm": {"done": image.pk, "csrfmiddlewaretoken": get_token(request)},
        "prevImageUrl": reverse("annotate-image", args=[previous.pk]) if previous else None,
        "secondsPerMaskHint": project.setting("seconds_per_mask_hint"),
        # The page renews the lease every third of it while the annotator is active.
        "leaseSeconds": int(services.lease_duration().total_seconds()),
    }
    response = render(request, "annotate.html", {"config_json": config})
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_http_methods(["GET", "POST"])
def review_page(request: HttpRequest, pk: int) -> HttpResponse:
    """Annotated images one at a time: reject masks with a note, or approve the image."""
    project = get_project(request.user, pk, REVIEWERS)
    if request.method == "POST":
        return _review_action(request, project)
    wanted = int_or_none(request.GET.get("image"))
    image = None
    if wanted is not None:
        image = Image.objects.filter(pk=wanted, project=project).first()
    if image is None:
        image = selectors.next_for_review(project)
    masks = list(
        Mask.objects.filter(image=image, status__in=(MaskStatus.ACCEPTED, MaskStatus.REJECTED))
        .select_related("label", "annotator")
        .order_by("id")
        if image
        else []
    )
    following = selectors.next_for_review(project, after=image.pk) if image else None
    review_data = {
        "image": None if image is None else {"id": image.pk, "width": image.width, "height": image.height},
        "masks": [
            {"id": m.pk, "segmentation": m.segmentation, "status": m.status,
             "color": m.label.color if m.label else "#ffcc00"}
            for m in masks
        ],
    }  # fmt: skip
    return render(
        request,
        "annotation/review.html",
        {
            "project": project,
            "image": image,
            "masks": masks,
            "following": following,
            "waiting": selectors.review_queue(project).count(),
            "review_data": review_data,
        },
    )


def _review_action(request: HttpRequest, project) -> HttpResponse:
    action = request.POST.get("action")
    image_id = int_or_none(request.POST.get("image"))
    target = reverse("review-page", args=[project.pk])
    try:
        if action == "reject":
            mask = get_object_or_404(Mask, pk=parse_id(request.POST.get("mask")), project=project)
            services.reject_mask(
                mask,
                request.user,
                note=request.POST.get("note", ""),
                version=parse_int(request.POST.get("version", "0")),
            )
            messages.success(request, f"Mask #{mask.pk} rejected; the image goes back to the annotators.")
            return redirect(f"{target}?image={mask.image_id}")
        if action == "approve":
            image = get_object_or_404(Image, pk=parse_id(image_id), project=project)
            services.approve_image(image, request.user)
            messages.success(request, f"Image #{image.pk} approved.")
            following = selectors.next_for_review(project, after=image.pk)
            return redirect(f"{target}?image={following.pk}" if following else target)
    except (ValidationError, StaleVersion, ValueError) as exc:
        text = "; ".join(f"{v}" for v in exc.messages) if isinstance(exc, ValidationError) else str(exc)
        messages.error(request, text)
        return redirect(f"{target}?image={image_id}" if image_id is not None else target)
    messages.error(request, f"unknown review action {action!r}")
    return redirect(target)


@login_required
def dashboard_page(request: HttpRequest, pk: int) -> HttpResponse:
    project = get_project(request.user, pk)
    data = selectors.dashboard(project)
    progress = data["progress"]
    context = {
        "project": project,
        "data": data,
        "role": role_in(request.user, pk),
        "done_percent": round(100 * progress["images_done"] / progress["images_total"], 1)
        if progress["images_total"]
        else 0,
        "seconds_by_model": charts.bar_chart(
            [(g["name"], g["median_seconds"]) for g in data["effort_by_model_version"]],
            title="Median seconds per mask by model version",
            unit="s",
            reference=data["seconds_per_mask_hint"],
        ),
        "clicks_by_model": charts.bar_chart(
            [(g["name"], g["median_clicks"]) for g in data["effort_by_model_version"]],
            title="Median clicks per mask by model version",
            unit="",
        ),
        "seconds_by_annotator": charts.bar_chart(
            [(g["name"], g["median_seconds"]) for g in data["effort_by_annotator"]],
            title="Median seconds per mask by annotator",
            unit="s",
            reference=data["seconds_per_mask_hint"],
        ),
        "masks_histogram": charts.bar_chart(
            [(str(k), v) for k, v in progress["masks_per_image_histogram"].items()],
            title="Done images by number of accepted masks",
            unit="",
        ),
        "suggestions": suggestions_selectors.dashboard_section(project),
        "min_masks": settings.MASKMILL_LABEL_MIN_MASKS_PER_LABEL,
        **training_charts(project),
    }
    return render(request, "annotation/dashboard.html", context)
