"""The minimal server-rendered pages: the user's projects and a project's images (the annotation
UI itself lives in frontend/)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from annotator.images.models import Image
from annotator.projects.access import get_project, projects_of, role_in


@login_required
def projects_page(request: HttpRequest) -> HttpResponse:
    projects = projects_of(request.user).annotate(image_total=Count("images")).order_by("name")
    rows = [
        {
            "project": p,
            "role": role_in(request.user, p.pk),
            "preview": Image.objects.filter(project=p).order_by("id")[:6],
        }
        for p in projects
    ]
    return render(request, "projects/list.html", {"rows": rows})


@login_required
def project_page(request: HttpRequest, pk: int) -> HttpResponse:
    project = get_project(request.user, pk)
    page = Paginator(Image.objects.filter(project=project).order_by("id"), 60).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "projects/detail.html",
        {"project": project, "page": page, "role": role_in(request.user, pk), "labels": project.labels.all()},
    )
