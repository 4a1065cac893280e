"""A project's training schedule: one django-celery-beat ``PeriodicTask`` per project, so it lives
in the database (beat's DatabaseScheduler picks edits up without a restart) and is editable in the
admin as well as through the API."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from annotator.projects.models import Project

TASK = "annotator.training.tasks.scheduled_training"


def task_name(project: Project | int) -> str:
    pk = project if isinstance(project, int) else project.pk
    return f"maskmill: train project {pk}"


def get_schedule(project: Project) -> PeriodicTask | None:
    return PeriodicTask.objects.filter(name=task_name(project)).select_related("crontab", "interval").first()


def describe(task: PeriodicTask | None) -> dict[str, Any] | None:
    if task is None:
        return None
    crontab = None
    if task.crontab is not None:
        c = task.crontab
        crontab = f"{c.minute} {c.hour} {c.day_of_month} {c.month_of_year} {c.day_of_week}"
    every = None
    if task.interval is not None:
        seconds = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1, "microseconds": 1e-6}
        every = int(task.interval.every * seconds[task.interval.period])
    return {
        "id": task.pk,
        "crontab": crontab,
        "every_seconds": every,
        "enabled": task.enabled,
        "last_run_at": task.last_run_at,
        "total_run_count": task.total_run_count,
    }


def parse_crontab(text: Any) -> dict[str, str]:
    """ "minute hour day-of-month month day-of-week" (UTC), checked by celery's own parser."""
    from celery.schedules import crontab

    if not isinstance(text, str) or len(text) > 200:
        raise ValidationError({"crontab": "must be a string like '0 3 * * *'"})
    parts = text.split()
    if len(parts) != 5:
        raise ValidationError({"crontab": "needs 5 fields: minute hour day-of-month month day-of-week"})
    fields = dict(zip(["minute", "hour", "day_of_month", "month_of_year", "day_of_week"], parts, strict=True))
    try:
        crontab(**fields)
    except (ValueError, TypeError, KeyError) as exc:
        raise ValidationError({"crontab": f"not a valid crontab: {exc}"}) from exc
    return fields


@transaction.atomic
def set_schedule(
    project: Project,
    *,
    crontab: str | None = None,
    every_seconds: int | None = None,
    enabled: bool = True,
) -> PeriodicTask:
    """Create or change the project's schedule: a crontab (UTC) or a fixed interval, not both."""
    if (crontab is None) == (every_seconds is None):
        raise ValidationError({"schedule": "give either crontab or every_seconds"})
    values: dict[str, Any] = {"crontab": None, "interval": None}
    if crontab is not None:
        values["crontab"], _ = CrontabSchedule.objects.get_or_create(**parse_crontab(crontab), timezone="UTC")
    else:
        if isinstance(every_seconds, bool) or not isinstance(every_seconds, int) or every_seconds < 1:
            raise ValidationError({"every_seconds": "must be a positive whole number"})
        values["interval"], _ = IntervalSchedule.objects.get_or_create(
            every=every_seconds, period=IntervalSchedule.SECONDS
        )
    task, _ = PeriodicTask.objects.update_or_create(
        name=task_name(project),
        defaults={
            **values,
            "task": TASK,
            "kwargs": json.dumps({"project_id": project.pk}),
            "queue": "train",
            "enabled": bool(enabled),
            "description": f"Retrain {project} on its accepted masks (Maskmill).",
        },
    )
    return task


def delete_schedule(project: Project) -> bool:
    deleted, _ = PeriodicTask.objects.filter(name=task_name(project)).delete()
    return deleted > 0
