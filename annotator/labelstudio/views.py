"""The project's Label Studio page: the backend URL to paste into Label Studio, the connection,
and push/pull buttons (managers)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from annotator.labelstudio import client, sync
from annotator.labelstudio.api import describe
from annotator.labelstudio.models import Connection
from annotator.labelstudio.regions import RegionError
from annotator.projects.access import MANAGERS, get_project


@login_required
def labelstudio_page(request: HttpRequest, pk: int) -> HttpResponse:
    project = get_project(request.user, pk, MANAGERS)
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "connect":
                client.save_connection(
                    project,
                    url=request.POST.get("url") or None,
                    token=request.POST.get("token") or None,
                    ls_project_id=request.POST.get("ls_project") or None,
                    user=request.user,
                )
                messages.success(request, "Connection saved.")
            elif action in ("push", "pull"):
                connection = Connection.objects.filter(project=project).first()
                if connection is None:
                    raise ValidationError("connect the project to Label Studio first")
                if action == "push":
                    done = sync.push(connection, as_annotations=request.POST.get("as_annotations") == "1")
                else:
                    done = sync.pull(connection, request.user)
                messages.success(request, f"{action}: {done}")
        except (ValidationError, RegionError, client.FetchError, sync.SyncError) as error:
            messages.error(request, f"{action}: {'; '.join(getattr(error, 'messages', [str(error)]))}")
        return redirect("labelstudio-page", pk=project.pk)
    connection = Connection.objects.filter(project=project).first()
    backend_url = request.build_absolute_uri(f"/ls/{project.pk}/")
    return render(
        request,
        "labelstudio/page.html",
        {"project": project, "connection": describe(connection), "backend_url": backend_url},
    )
