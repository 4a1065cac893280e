"""What starts a run besides a person: the accepted-masks threshold (checked where masks are
accepted) and the project's beat schedule (a django-celery-beat PeriodicTask)."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django_celery_beat.models import PeriodicTask

from annotator.masks.models import MaskStatus
from annotator.masks.services import create_mask, update_mask
from annotator.projects.services import update_project
from annotator.training import schedule, triggers
from annotator.training.models import TrainingRun, TrainingTrigger
from tests.annotator.training.conftest import WIDTH, add_disk_image

pytestmark = pytest.mark.django_db


def _square(x: int) -> dict:
    import numpy as np

    from engine.masks import encode_rle

    mask = np.zeros((72, WIDTH), dtype=bool)
    mask[10:30, x : x + 20] = True
    return encode_rle(mask)


def test_threshold_starts_a_run_when_masks_are_accepted(trainable, django_capture_on_commit_callbacks):
    """No run yet: every accepted training mask counts; the run is queued (and, eagerly, done)."""
    from annotator.images.models import Image

    training = {**trainable.settings["training"], "accepted_masks_threshold": 2}
    update_project(trainable, settings={**trainable.settings, "training": training})
    image = Image.objects.filter(project=trainable, split="train").first()
    with django_capture_on_commit_callbacks(execute=True):
        create_mask(image, segmentation=_square(5), annotator=None, status=MaskStatus.ACCEPTED)
    run = TrainingRun.objects.get()
    assert run.trigger == TrainingTrigger.THRESHOLD and run.status == "done"
    assert triggers.new_accepted_masks(trainable) == (0, 2)


def test_threshold_counts_masks_accepted_since_the_last_run(
    trainable, django_capture_on_commit_callbacks, settings
):
    from annotator.images.models import Image
    from annotator.training.runs import request_training_run

    training = {**trainable.settings["training"], "accepted_masks_threshold": 2}
    update_project(trainable, settings={**trainable.settings, "training": training})
    first = request_training_run(trainable, enqueue=False)
    TrainingRun.objects.filter(pk=first.pk).update(status="done")
    image = Image.objects.filter(project=trainable, split="train").first()
    with django_capture_on_commit_callbacks(execute=True):
        create_mask(image, segmentation=_square(5), annotator=None, status=MaskStatus.ACCEPTED)
    assert TrainingRun.objects.count() == 1  # 1 new accepted mask: below the threshold
    proposed = create_mask(image, segmentation=_square(40), annotator=None)
    with django_capture_on_commit_callbacks(execute=True):
        update_mask(proposed, version=proposed.version, status=MaskStatus.ACCEPTED)
    run = TrainingRun.objects.order_by("-id").first()
    assert run.pk != first.pk and run.trigger == TrainingTrigger.THRESHOLD


def test_threshold_zero_never_starts_a_run(trainable, django_capture_on_commit_callbacks):
    from annotator.images.models import Image

    image = Image.objects.filter(project=trainable, split="train").first()
    with django_capture_on_commit_callbacks(execute=True):
        create_mask(image, segmentation=_square(5), annotator=None, status=MaskStatus.ACCEPTED)
    assert not TrainingRun.objects.exists()


def test_schedule_is_one_periodic_task_per_project(project):
    task = schedule.set_schedule(project, crontab="0 3 * * 1")
    assert task.task == schedule.TASK and json.loads(task.kwargs) == {"project_id": project.pk}
    assert schedule.describe(task)["crontab"] == "0 3 * * 1"
    again = schedule.set_schedule(project, every_seconds=3600, enabled=False)
    assert again.pk == task.pk and PeriodicTask.objects.filter(name=schedule.task_name(project)).count() == 1
    described = schedule.describe(schedule.get_schedule(project))
    assert described["every_seconds"] == 3600 and described["crontab"] is None and not described["enabled"]
    assert schedule.delete_schedule(project) and schedule.get_schedule(project) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"crontab": "61 * * * *"},
        {"crontab": "* * *"},
        {"crontab": 5},
        {"every_seconds": 0},
        {},
        {"crontab": "0 3 * * *", "every_seconds": 60},
    ],
)
def test_bad_schedules_are_refused(project, kwargs):
    with pytest.raises(ValidationError):
        schedule.set_schedule(project, **kwargs)


def test_the_scheduled_task_asks_for_a_run_or_says_why_not(trainable):
    assert "removed or disabled" in triggers.scheduled(trainable.pk)  # a message left in the queue
    schedule.set_schedule(trainable, crontab="0 3 * * *")
    outcome = triggers.scheduled(trainable.pk)
    assert (
        outcome.startswith("training run") and TrainingRun.objects.get().trigger == TrainingTrigger.SCHEDULE
    )
    assert "no longer exists" in triggers.scheduled(987654)


def test_scheduled_run_with_too_few_masks_says_how_many(project, tiny_model):
    add_disk_image(project, 1)
    schedule.set_schedule(project, every_seconds=60)
    assert "more needed" in triggers.scheduled(project.pk)
    assert not TrainingRun.objects.exists()
