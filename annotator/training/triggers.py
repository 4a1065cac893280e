"""What starts a training run besides a person: the project's beat schedule, and the threshold of
newly accepted masks. The threshold is checked where masks are accepted (the mask services and
the generation stage call ``masks_accepted``), once their transaction has committed: no polling,
and a failed check never fails the accept."""

from __future__ import annotations

import logging

from django.core.exceptions import ValidationError
from django.db import transaction

from annotator.projects.models import Project
from annotator.training import data
from annotator.training.config import training_settings
from annotator.training.models import TrainingRun, TrainingTrigger

log = logging.getLogger(__name__)


def masks_accepted(project_id: int) -> None:
    """Masks of the project were just accepted: check the threshold once the change commits."""
    transaction.on_commit(lambda: check_threshold(project_id), robust=True)


def new_accepted_masks(project: Project) -> tuple[int, int]:
    """(accepted training masks since the project's last run was asked for, the threshold)."""
    try:
        config = training_settings(project)
    except ValidationError:
        return 0, 0
    if config.accepted_masks_threshold <= 0:
        return 0, 0
    masks = data.training_masks(project, config)
    last = (
        TrainingRun.objects.filter(project=project)
        .order_by("-id")
        .values_list("masks_since", flat=True)
        .first()
    )
    if last is not None:
        masks = masks.filter(accepted_at__gt=last)
    return masks.count(), config.accepted_masks_threshold


def check_threshold(project_id: int) -> TrainingRun | None:
    """Ask for a run when N masks were accepted since the last one; None when not (yet)."""
    from annotator.training.runs import TrainingBusy, request_training_run

    try:
        project = Project.objects.filter(pk=project_id).first()
        if project is None:
            return None
        count, threshold = new_accepted_masks(project)
        if threshold <= 0 or count < threshold:
            return None
        if TrainingRun.objects.filter(project=project, status__in=("pending", "running")).exists():
            return None
        return request_training_run(project, trigger=TrainingTrigger.THRESHOLD)
    except (TrainingBusy, ValidationError) as exc:
        log.info("project %s: threshold reached but no run: %s", project_id, exc)
    except Exception:
        log.exception("project %s: checking the training threshold failed", project_id)
    return None


def scheduled(project_id: int) -> str:
    """The beat schedule's run; the outcome in words (also in the worker's log)."""
    from django_celery_beat.models import PeriodicTask

    from annotator.training.runs import TrainingBusy, request_training_run
    from annotator.training.schedule import task_name

    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        PeriodicTask.objects.filter(name=task_name(project_id)).delete()
        return f"project {project_id} no longer exists; its schedule was removed"
    if not PeriodicTask.objects.filter(name=task_name(project_id), enabled=True).exists():
        return f"project {project_id}'s schedule was removed or disabled; nothing to do"
    try:
        run = request_training_run(project, trigger=TrainingTrigger.SCHEDULE)
    except TrainingBusy as busy:
        outcome = str(busy)
    except ValidationError as exc:
        outcome = "; ".join(exc.messages)
    else:
        outcome = f"training run {run.pk} queued"
    log.info("project %s: scheduled training: %s", project_id, outcome)
    return outcome
