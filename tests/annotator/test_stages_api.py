"""The stages' REST API: who may do what (manager writes, members read, outsiders 404), stage
moves, runs with progress, cancel/resume and the pre-fill report."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from annotator.images.services import ingest_files
from annotator.masks.models import Mask
from annotator.stages import generation
from annotator.training.models import ModelVersion
from tests.integration.pipeline_support import expected_mask_count, shapes_png

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _cheap_generator(settings):
    settings.MASKMILL_MASK_GENERATOR = "tests.integration.pipeline_support.components_generator"
    generation.forget_generators()


@pytest.fixture
def images(project):
    project.active_model_version = ModelVersion.objects.create(family="custom", config={}, name="tiny")
    project.save()
    uploads = [SimpleUploadedFile(f"s{seed}.png", shapes_png(seed)) for seed in range(3)]
    return ingest_files(project, uploads, None).created


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.mark.parametrize(
    ("who", "code"), [("manager", 200), ("annotator", 403), ("reviewer", 403), ("outsider", 404)]
)
def test_only_managers_move_stages(project, images, users, who, code, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(users[who]).post(
            f"/api/projects/{project.pk}/stage", {"stage": "fully_automatic"}, format="json"
        )
    assert response.status_code == code, response.content
    project.refresh_from_db()
    assert (project.stage == "fully_automatic") == (code == 200)
    if code == 200:
        run = response.json()["run"]
        assert run["mode"] == "auto" and run["total"] == 3
        assert Mask.objects.filter(project=project).count() == sum(expected_mask_count(s) for s in range(3))


def test_bad_stage_and_filter_are_400_with_reasons(project, images, users):
    client = client_for(users["manager"])
    response = client.post(f"/api/projects/{project.pk}/stage", {"stage": "turbo"}, format="json")
    assert response.status_code == 400 and "stage" in response.json()
    response = client.post(
        f"/api/projects/{project.pk}/stage", {"stage": "semi_automatic", "filter": {"size": 3}}, format="json"
    )
    assert response.status_code == 400 and "unknown key" in str(response.json())


def test_runs_progress_cancel_resume(project, images, users, django_capture_on_commit_callbacks):
    manager, annotator, outsider = (client_for(users[n]) for n in ("manager", "annotator", "outsider"))
    assert (
        annotator.post(f"/api/projects/{project.pk}/generation-runs/", {}, format="json").status_code == 403
    )
    with django_capture_on_commit_callbacks(execute=True):
        created = manager.post(
            f"/api/projects/{project.pk}/generation-runs/", {"filter": {"ids": [images[0].pk]}}, format="json"
        )
    assert created.status_code == 201, created.content
    run_id = created.json()["id"]
    detail = annotator.get(f"/api/generation-runs/{run_id}/").json()
    assert detail["status"] == "done"
    assert detail["progress"]["done"] == 1 and detail["progress"]["total"] == 1
    assert detail["progress"]["masks"] == expected_mask_count(0) and detail["progress"]["failed_items"] == []
    assert outsider.get(f"/api/generation-runs/{run_id}/").status_code == 404
    listing = annotator.get(f"/api/projects/{project.pk}/generation-runs/").json()
    assert [r["id"] for r in listing["results"]] == [run_id]

    from annotator.stages import services

    second = services.start_run(project, "auto", enqueue=False)  # queued but no worker yet
    assert annotator.post(f"/api/generation-runs/{second.pk}/cancel").status_code == 403
    cancelled = manager.post(f"/api/generation-runs/{second.pk}/cancel").json()
    assert cancelled["status"] == "cancelled" and cancelled["progress"]["cancelled"] == 2
    with django_capture_on_commit_callbacks(execute=True):
        resumed = manager.post(f"/api/generation-runs/{second.pk}/resume", {}, format="json")
    assert resumed.status_code == 200 and resumed.json()["status"] == "running"
    after = annotator.get(f"/api/generation-runs/{second.pk}/").json()  # the queued tasks have run
    assert after["status"] == "done" and after["progress"]["done"] == 2


def test_prefill_report_endpoints(project, images, users, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        client_for(users["manager"]).post(
            f"/api/projects/{project.pk}/stage", {"stage": "semi_automatic"}, format="json"
        )
    reviewer = client_for(users["reviewer"])
    report = reviewer.get(f"/api/projects/{project.pk}/prefill-report/").json()
    assert report["count"] == 3
    assert [row["prefilled"] for row in report["results"]] == [expected_mask_count(s) for s in range(3)]
    assert report["totals"]["prefilled"] == sum(expected_mask_count(s) for s in range(3))
    assert report["totals"]["pending"] == report["totals"]["prefilled"]
    one = reviewer.get(f"/api/images/{images[1].pk}/prefill-report").json()
    assert one["prefilled"] == expected_mask_count(1) and one["kept"] == 0
    assert client_for(users["outsider"]).get(f"/api/images/{images[1].pk}/prefill-report").status_code == 404
    assert client_for(users["outsider"]).get(f"/api/projects/{project.pk}/prefill-report/").status_code == 404


def test_stages_page_moves_the_project_and_shows_runs(
    project, images, users, client, django_capture_on_commit_callbacks
):
    client.force_login(users["manager"])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/projects/{project.pk}/stages/", {"stage": "fully_automatic"})
    assert response.status_code == 302
    page = client.get(f"/projects/{project.pk}/stages/").content.decode()
    assert "Fully automatic" in page and "Run 1 started on 3 images." in page
    assert 'data-testid="runs"' in page and "<td>done</td>" in page
    client.force_login(users["annotator"])
    assert client.post(f"/projects/{project.pk}/stages/", {"stage": "assisted_manual"}).status_code == 403
    assert "stage-form" not in client.get(f"/projects/{project.pk}/stages/").content.decode()
    client.force_login(users["outsider"])
    assert client.get(f"/projects/{project.pk}/stages/").status_code == 404
