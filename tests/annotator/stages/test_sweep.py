"""The periodic sweep queues again the work whose broker messages were lost: pending items of a
run, items whose worker is gone past the task's time limit, images without their embedding;
never work that is young or may still be in a worker's hands, and the masks stay exactly once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from annotator.images.models import Embedding
from annotator.images.services import ingest_files
from annotator.jobs import JobStatus
from annotator.masks.models import Mask
from annotator.stages import generation, items, services
from annotator.stages.sweep import sweep
from annotator.training.models import ModelVersion
from tests.integration.pipeline_support import shapes_png
from tests.tiny_models import TINY_CONFIG

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _cheap_generator(settings):
    settings.MASKMILL_MASK_GENERATOR = "tests.integration.pipeline_support.components_generator"
    settings.MASKMILL_SWEEP_PENDING_SECONDS = 300
    settings.MASKMILL_SWEEP_GRACE_SECONDS = 60
    settings.MASKMILL_GENERATE_TIME_LIMIT = 900
    generation.forget_generators()
    yield
    generation.forget_generators()


@pytest.fixture
def images(project):
    project.active_model_version = ModelVersion.objects.create(family="custom", config={"x": 1}, name="t")
    project.save()
    uploads = [SimpleUploadedFile(f"s{seed}.png", shapes_png(seed)) for seed in range(4)]
    return ingest_files(project, uploads, None).created


def later(seconds: float):
    return timezone.now() + timedelta(seconds=seconds)


def test_lost_pending_items_are_queued_again_once_old_enough(project, images):
    run = services.start_run(project, "auto", enqueue=False)  # its messages never reach a worker
    assert sweep().items == 0  # young: the messages may be on their way
    result = sweep(now=later(301))
    assert result.items == 4 and result.skipped == ()
    run.refresh_from_db()
    assert (run.status, run.done) == (JobStatus.DONE, 4)
    assert sweep(now=later(301)).items == 0  # nothing left
    for item in run.items.all():  # every image's masks once, from its one item
        assert Mask.objects.filter(image_id=item.image_id).count() == item.mask_count > 0


def test_a_running_item_is_queued_again_only_past_the_time_limit(project, images):
    run = services.start_run(project, "auto", enqueue=False)
    first = run.items.order_by("id").first()
    assert items.claim_item(first.pk, "dead-worker:1") is not None  # its worker then dies
    for other in run.items.exclude(pk=first.pk):
        assert services.process_item(other.pk, "w") == "done"
    assert sweep(now=later(900)).items == 0  # the task could still be running
    assert sweep(now=later(961)).items == 1
    first.refresh_from_db()
    run.refresh_from_db()
    assert (first.status, first.attempts, run.status) == (JobStatus.DONE, 2, JobStatus.DONE)


def test_cancelled_runs_are_left_alone(project, images):
    run = services.start_run(project, "auto", enqueue=False)
    services.cancel_run(run)
    assert sweep(now=later(301)).items == 0


def test_images_without_their_embedding_get_it(project, settings, django_capture_on_commit_callbacks):
    settings.MASKMILL_MODEL_TYPE = "custom"
    settings.MASKMILL_MODEL_CONFIG = TINY_CONFIG
    uploads = [SimpleUploadedFile(f"e{seed}.png", shapes_png(seed)) for seed in range(2)]
    with django_capture_on_commit_callbacks(execute=False):  # the ingest's embed messages are lost
        created = ingest_files(project, uploads, None).created
    assert Embedding.objects.count() == 0
    assert sweep().embeddings == 0
    assert sweep(now=later(301)).embeddings == 2
    assert sorted(Embedding.objects.values_list("image_id", flat=True)) == sorted(i.pk for i in created)
    assert sweep(now=later(301)).embeddings == 0


def test_beat_runs_the_sweep():
    from annotator.celery import app

    entry = app.conf.beat_schedule["maskmill-sweep"]
    assert entry["task"] in app.tasks and entry["schedule"] > 0
