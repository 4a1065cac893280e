"""Pages of label suggestions: the dashboard's "train now" button."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from annotator.projects.access import MANAGERS, get_project
from annotator.suggestions.services import train_head
from engine.labels import LabelHeadError


@login_required
@require_POST
def train_label_head_page(request: HttpRequest, pk: int) -> HttpResponse:
    project = get_project(request.user, pk, MANAGERS)
    try:
        row = train_head(project)
        messages.success(request, f"Label head #{row.pk} trained: {row.status}. {row.reason}")
    except LabelHeadError as exc:
        messages.error(request, str(exc))
    return redirect("dashboard-page", pk=project.pk)
