"""Runs keep honest records: a run resumed before anything was claimed gets its start time at the
first claim, and starting a run with nothing to do creates no empty run (it says so)."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from rest_framework.test import APIClient

from annotator.images.services import ingest_files
from annotator.jobs import JobStatus
from annotator.stages import generation, selectors, services
from annotator.stages.models import GenerationRun
from annotator.training.models import ModelVersion
from tests.integration.pipeline_support import shapes_png

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _cheap_generator(settings):
    settings.MASKMILL_MASK_GENERATOR = "tests.integration.pipeline_support.components_generator"
    generation.forget_generators()
    yield
    generation.forget_generators()


@pytest.fixture
def images(project):
    project.active_model_version = ModelVersion.objects.create(family="custom", config={"x": 1}, name="t")
    project.save()
    uploads = [SimpleUploadedFile(f"s{seed}.png", shapes_png(seed)) for seed in range(3)]
    return ingest_files(project, uploads, None).created


def test_a_run_resumed_before_any_claim_gets_its_start_time(
    project, images, django_capture_on_commit_callbacks
):
    run = services.start_run(project, "auto", enqueue=False)  # the broker lost every message
    with django_capture_on_commit_callbacks(execute=False):
        assert services.resume_run(run) == 3
    run.refresh_from_db()
    assert (run.status, run.started_at) == (JobStatus.RUNNING, None)
    for item in run.items.all():
        assert services.process_item(item.pk, "w") == "done"
    run.refresh_from_db()
    assert run.status == JobStatus.DONE and run.started_at is not None
    assert selectors.run_progress(run)["images_per_hour"] is not None


def test_a_repeated_generate_says_nothing_to_do_and_creates_no_run(project, images, users):
    out = io.StringIO()
    call_command("generate", project.slug, "--inline", stdout=out)
    runs = GenerationRun.objects.count()
    again = io.StringIO()
    call_command("generate", project.slug, "--inline", stdout=again)
    assert "nothing to do" in again.getvalue()
    client = APIClient()
    client.force_authenticate(users["manager"])
    response = client.post(f"/api/projects/{project.pk}/generation-runs/", {"mode": "auto"}, format="json")
    assert response.status_code == 200 and "nothing to do" in response.json()["detail"]
    assert GenerationRun.objects.count() == runs == 1
