"""The training page: data available vs needed, start/cancel runs, the schedule, the runs with
their loss curves and evaluations, the version lineage with promote and roll back (managers)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path

from annotator.annotation.charts import bar_chart
from annotator.projects.access import ALL_ROLES, MANAGERS, get_project, role_in
from annotator.projects.models import Project
from annotator.training import promotion, runs, schedule, selectors
from annotator.training.charts import line_chart
from annotator.training.models import JobStatus, TrainingRun, TrainingTrigger


def training_charts(project: Project, last: int = 6) -> dict[str, Any]:
    """Loss curves of the latest runs and candidate-vs-active evaluation, for this page and the
    dashboard (next to its time/clicks-per-mask plots)."""
    recent = list(TrainingRun.objects.filter(project=project).order_by("-id")[:last])
    curves = [(f"run {r.pk}", (r.metrics or {}).get("loss") or []) for r in reversed(recent)]
    rows: list[tuple[str, float | None]] = []
    for r in reversed(recent):
        evaluation = (r.metrics or {}).get("evaluation") or {}
        metric = evaluation.get("metric", "mIoU@1")
        if "candidate" in evaluation:
            rows.append((f"run {r.pk} candidate", round(evaluation["candidate"].get(metric, 0.0), 4)))
            rows.append(
                (
                    f"run {r.pk} active (v{evaluation.get('active_version')})",
                    round(evaluation["active"].get(metric, 0.0), 4),
                )
            )
    return {
        "loss_chart": line_chart(curves, title="Training loss by run", y_label="loss"),
        "evaluation_chart": bar_chart(rows, title="Held-out evaluation: candidate vs active (gate metric)"),
    }


def _parse_int(value: str | None) -> int | None:
    value = (value or "").strip()
    return int(value) if value.isdigit() and len(value) < 10 else None


@login_required
def training_page(request: HttpRequest, pk: int) -> HttpResponse:
    project = get_project(request.user, pk, MANAGERS if request.method == "POST" else ALL_ROLES)
    if request.method == "POST":
        try:
            text = _act(request, project)
        except runs.TrainingBusy as exc:
            messages.error(request, str(exc))
        except ValidationError as exc:
            messages.error(request, "; ".join(exc.messages))
        else:
            messages.success(request, text)
        return redirect("training-page", pk=pk)
    run_rows = [
        selectors.run_summary(r) for r in TrainingRun.objects.filter(project=project).order_by("-id")[:20]
    ]
    context = {
        "project": project,
        "role": role_in(request.user, pk),
        "status": _data_status(project),
        "schedule": schedule.describe(schedule.get_schedule(project)),
        "runs": run_rows,
        "versions": selectors.lineage(project),
        "promotions": selectors.promotions(project),
        "refresh": any(r["status"] in (JobStatus.PENDING, JobStatus.RUNNING) for r in run_rows),
        **training_charts(project),
    }
    return render(request, "training/training.html", context)


def _data_status(project: Project) -> dict[str, Any]:
    try:
        return runs.data_status(project)
    except ValidationError as exc:
        return {"error": "; ".join(exc.messages)}


def _act(request: HttpRequest, project: Project) -> str:
    action = request.POST.get("action", "")
    if action == "train":
        parameters: dict[str, Any] = {}
        if request.POST.get("mode") in ("decoder", "full"):
            parameters["mode"] = request.POST["mode"]
        steps = _parse_int(request.POST.get("steps"))
        if steps:
            parameters["steps"] = steps
        run = runs.request_training_run(
            project, trigger=TrainingTrigger.MANUAL, user=request.user, parameters=parameters or None
        )
        return f"Training run {run.pk} queued."
    if action == "cancel":
        run = TrainingRun.objects.filter(project=project, pk=_parse_int(request.POST.get("run"))).first()
        if run is None or not runs.cancel_run(run):
            raise ValidationError("no open run to cancel")
        return f"Run {run.pk} cancelled."
    if action == "promote":
        version = selectors.version_of_project(project, _parse_int(request.POST.get("version")) or 0)
        if version is None:
            raise ValidationError("no such model version in this project")
        promotion.promote(project, version, user=request.user)
        return f"Version {version.pk} is active."
    if action == "rollback":
        done = promotion.rollback(project, user=request.user)
        return f"Rolled back to version {done.version_id}."
    if action == "schedule":
        crontab = request.POST.get("crontab", "").strip() or None
        every = request.POST.get("every_seconds", "").strip()
        every_seconds = _parse_int(every) if every else None
        if every and (every_seconds is None or every_seconds < 60):
            raise ValidationError("every_seconds must be a whole number of at least 60")
        schedule.set_schedule(
            project, crontab=crontab, every_seconds=every_seconds, enabled=request.POST.get("enabled") == "on"
        )
        return "Schedule saved."
    if action == "unschedule":
        schedule.delete_schedule(project)
        return "Schedule removed."
    raise ValidationError(f"unknown action {action[:40]!r}")


urlpatterns = [path("projects/<id:pk>/training/", training_page, name="training-page")]
