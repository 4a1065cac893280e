"""The stages page: a project's stage, the form a manager moves it with, its generation runs with
live progress (the page refreshes itself while a run is going) and the pre-fill report."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path

from annotator import params  # noqa: F401 - registers the <id:...> converter
from annotator.jobs import JobStatus
from annotator.projects.access import ALL_ROLES, MANAGERS, get_project, role_in
from annotator.projects.models import Stage
from annotator.stages import selectors, services
from annotator.stages.models import GenerationRun


@login_required
def stages_page(request: HttpRequest, pk: int) -> HttpResponse:
    project = get_project(request.user, pk, MANAGERS if request.method == "POST" else ALL_ROLES)
    if request.method == "POST":
        image_filter = {k: request.POST[k] for k in ("status", "split", "ids") if request.POST.get(k)}
        try:
            run = services.set_stage(
                project, request.POST.get("stage", ""), user=request.user, image_filter=image_filter
            )
        except ValidationError as exc:
            messages.error(request, "; ".join(exc.messages))
        else:
            messages.success(
                request,
                f"Run {run.pk} started on {run.total} images."
                if run
                else "Stage changed; no images to generate.",
            )
        return redirect("stages-page", pk=pk)
    runs = list(GenerationRun.objects.filter(project=project).order_by("-id")[:20])
    rows = [{"run": run, "progress": selectors.run_progress(run)} for run in runs]
    report = selectors.report_totals(
        selectors.prefill_report(list(selectors.prefilled_image_ids(project.pk)))
    )
    return render(
        request,
        "stages/stages.html",
        {
            "project": project,
            "role": role_in(request.user, pk),
            "stages": Stage.choices,
            "rows": rows,
            "report": report,
            "refresh": any(r["run"].status in (JobStatus.PENDING, JobStatus.RUNNING) for r in rows),
        },
    )


@login_required
def cancel_run_page(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(GenerationRun, pk=pk)
    get_project(request.user, run.project_id, MANAGERS)
    if request.method == "POST":
        services.cancel_run(run)
    return redirect("stages-page", pk=run.project_id)


urlpatterns = [
    path("projects/<id:pk>/stages/", stages_page, name="stages-page"),
    path("generation-runs/<id:pk>/cancel/", cancel_run_page, name="cancel-run-page"),
]
