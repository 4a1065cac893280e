"""Retraining started by its two automatic triggers, on the real services: the accepted-masks
threshold (checked when a mask is accepted, the run queued through Redis) and a django-celery-beat
schedule (a real ``celery beat`` process with the database scheduler), each trained, evaluated and
gated by the real ``celery worker`` on PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from annotator.images.embeddings import ensure_embedding
from annotator.images.models import Image
from annotator.masks.models import Mask, MaskSource, MaskStatus
from annotator.masks.services import create_mask
from annotator.projects.services import create_project, update_project
from annotator.training import schedule
from annotator.training.models import JobStatus, TrainingRun, TrainingTrigger
from engine.masks import encode_rle, rle_area, rle_to_bbox
from tests.annotator.annotation_fixtures import disk_mask, disk_picture

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[3]
WIDTH, HEIGHT = 96, 72
FAST = {
    "steps": 2,
    "batch": 2,
    "min_masks": 3,
    "max_clicks": 5,
    "promotion_margin": -1.0,
    "point_rounds": 1,
    "mask_rounds": 0,
}


@pytest.fixture
def worker_model(settings, worker_model_env, celery_worker_process):
    """This process uses the worker's model (same row), so embeddings it stores are the worker's."""
    import engine.training  # noqa: F401  (part of the project: an ImportError fails)
    from annotator.training.services import forget_loaded_models

    if not celery_worker_process["model"]:
        pytest.skip("the worker runs without a model: nothing to train")
    settings.MASKMILL_MODEL_TYPE = worker_model_env["MASKMILL_MODEL_TYPE"]
    settings.MASKMILL_CHECKPOINT = worker_model_env["MASKMILL_CHECKPOINT"]
    settings.MASKMILL_MODEL_CONFIG = json.loads(worker_model_env["MASKMILL_MODEL_CONFIG"])
    forget_loaded_models()
    yield celery_worker_process
    forget_loaded_models()


def disk_image(project, seed: int, split: str = "train") -> tuple[Image, dict]:
    """An image of a disk with its embedding stored (no ingest: its embed task would race this
    process) and the disk's RLE."""
    rng = np.random.default_rng(seed)
    center = (int(rng.integers(30, WIDTH - 30)), int(rng.integers(25, HEIGHT - 25)))
    radius = int(rng.integers(12, 20))
    image = Image(
        project=project, original_name=f"d{seed}.png", sha256=f"{seed:064d}", width=WIDTH, height=HEIGHT
    )
    image.split = split
    image.file.save(
        f"d{seed}.png", ContentFile(disk_picture(WIDTH, HEIGHT, center, radius, seed=seed)), save=False
    )
    image.save()
    ensure_embedding(image.pk)
    return image, encode_rle(disk_mask(WIDTH, HEIGHT, center, radius))


def accepted(project, image: Image, rle: dict) -> Mask:
    return Mask.objects.create(
        project=project, image=image, segmentation=rle, bbox=rle_to_bbox(rle), area=rle_area(rle),
        source=MaskSource.MANUAL, status=MaskStatus.ACCEPTED, accepted_at=timezone.now(),
    )  # fmt: skip


def project_with_data(name: str, owner, training: dict):
    project = create_project(name=name, creator=owner)
    update_project(project, settings={**project.settings, "training": {**FAST, **training}})
    for seed in range(100, 102):
        image, rle = disk_image(project, seed, split="val")
        accepted(project, image, rle)
    return project


def wait_for_run(project, deadline_seconds: float = 240) -> TrainingRun:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        run = TrainingRun.objects.filter(project=project).order_by("id").first()
        if run is not None and run.status not in (JobStatus.PENDING, JobStatus.RUNNING):
            return run
        time.sleep(0.5)
    pytest.fail(f"no finished training run for project {project.pk}: {list(TrainingRun.objects.values())}")


def test_the_threshold_trigger_trains_on_the_worker(worker_model, django_user_model):
    owner = django_user_model.objects.create_user(username="trainer", password="pw")
    project = project_with_data("Threshold", owner, {"accepted_masks_threshold": 3})
    pairs = [disk_image(project, seed) for seed in range(3)]
    for image, rle in pairs[:2]:
        create_mask(image, segmentation=rle, annotator=owner, status=MaskStatus.ACCEPTED)
    assert not TrainingRun.objects.exists()  # 2 of 3
    image, rle = pairs[2]
    create_mask(image, segmentation=rle, annotator=owner, status=MaskStatus.ACCEPTED)  # the third
    run = wait_for_run(project)
    assert run.trigger == TrainingTrigger.THRESHOLD and run.status == JobStatus.DONE, run.reason
    assert run.metrics["data"]["masks"] == 3 and "mIoU@1" in run.metrics["evaluation"]["candidate"]
    project.refresh_from_db()
    assert project.active_model_version_id == run.result_version_id  # margin -1: promoted
    assert "train_run[" in worker_model["log"].read_text(errors="replace")


@pytest.fixture
def beat_process(worker_model, tmp_path):
    """``celery beat`` with django-celery-beat's database scheduler on this session's database."""
    from django.db import connection

    parts = urlsplit(os.environ["DATABASE_URL"])
    env = {
        **os.environ,
        "DATABASE_URL": urlunsplit(parts._replace(path=f"/{connection.settings_dict['NAME']}")),
    }
    log_path = tmp_path / "beat.log"
    command = [
        sys.executable, "-m", "celery", "-A", "annotator.celery:app", "beat", "--loglevel", "INFO",
        "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler", "--max-interval", "1",
        "--pidfile=", "--schedule", str(tmp_path / "beat-schedule"),
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield {"process": process, "log": log_path}
    finally:
        if process.poll() is None:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_a_beat_schedule_trains_on_the_worker(beat_process, django_user_model):
    owner = django_user_model.objects.create_user(username="scheduler", password="pw")
    project = project_with_data("Scheduled", owner, {})
    for seed in range(3):
        accepted(project, *disk_image(project, seed))
    schedule.set_schedule(project, every_seconds=2)
    deadline = time.monotonic() + 120
    while not TrainingRun.objects.filter(project=project).exists():
        if time.monotonic() > deadline or beat_process["process"].poll() is not None:
            pytest.fail(f"beat started no run:\n{beat_process['log'].read_text(errors='replace')[-3000:]}")
        time.sleep(0.5)
    schedule.delete_schedule(project)  # one run is the point; no more while the test ends
    run = wait_for_run(project)
    assert run.trigger == TrainingTrigger.SCHEDULE and run.status == JobStatus.DONE, run.reason
    assert "scheduled_training" in beat_process["log"].read_text(errors="replace")
