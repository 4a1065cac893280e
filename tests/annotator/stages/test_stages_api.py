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


def test_proposals_decided_the_way_the_page_sends_them_are_counted_kept_fixed_rejected(
    project, images, users, django_capture_on_commit_callbacks
):
    """The annotation page's three one-key decisions on semi proposals, as the PATCH bodies it
    sends: accept as is (status and label only), reject, fix (the edited segmentation and the
    status together); a stale version is refused with 409 and changes nothing."""
    import numpy as np

    from engine.masks import decode_rle, encode_rle

    with django_capture_on_commit_callbacks(execute=True):
        client_for(users["manager"]).post(
            f"/api/projects/{project.pk}/stage", {"stage": "semi_automatic"}, format="json"
        )
    image = images[1]
    annotator = client_for(users["annotator"])
    listed = annotator.get(f"/api/images/{image.pk}/masks/").json()
    assert [(m["source"], m["status"]) for m in listed] == [("semi", "proposed")] * 3
    kept, rejected, fixed = listed
    label = project.labels.get(name="cat").pk

    response = annotator.patch(
        f"/api/masks/{kept['id']}/",
        {"status": "accepted", "label": label, "seconds": 1.5, "clicks": 0, "version": kept["version"]},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["segmentation"] == kept["segmentation"]
    assert response.json()["version"] == kept["version"] + 1

    response = annotator.patch(
        f"/api/masks/{rejected['id']}/",
        {"status": "rejected", "seconds": 0.8, "clicks": 0, "version": rejected["version"]},
        format="json",
    )
    assert response.status_code == 200, response.content

    edited = decode_rle(fixed["segmentation"]).copy()
    rows = np.flatnonzero(edited.any(axis=1))
    edited[rows[0] : rows[0] + 3] = False  # the eraser takes the top rows off
    body = {
        "segmentation": encode_rle(edited), "bbox": [0, 0, 1, 1], "area": 1, "label": label,
        "status": "accepted", "seconds": 6.0, "clicks": 2, "version": fixed["version"],
    }  # fmt: skip
    stale = annotator.patch(f"/api/masks/{fixed['id']}/", {**body, "version": 99}, format="json")
    assert stale.status_code == 409 and "version" in stale.json()["detail"]
    assert Mask.objects.get(pk=fixed["id"]).status == "proposed"
    response = annotator.patch(f"/api/masks/{fixed['id']}/", body, format="json")
    assert response.status_code == 200, response.content
    stored = Mask.objects.get(pk=fixed["id"])
    assert np.array_equal(decode_rle(stored.segmentation), edited)
    assert stored.area == int(edited.sum())  # geometry from the RLE, not from the client
    # The version the page still holds for the kept mask is stale now: its second save is refused.
    again = annotator.patch(
        f"/api/masks/{kept['id']}/", {"status": "rejected", "version": kept["version"]}, format="json"
    )
    assert again.status_code == 409

    decided = {m.pk: m for m in Mask.objects.filter(image=image)}
    assert [decided[m["id"]].status for m in listed] == ["accepted", "rejected", "accepted"]
    assert {m.annotator for m in decided.values()} == {users["annotator"]}  # who decided
    assert (decided[kept["id"]].seconds, decided[kept["id"]].clicks) == (1.5, 0)
    assert (decided[fixed["id"]].seconds, decided[fixed["id"]].clicks) == (6.0, 2)
    assert decided[fixed["id"]].point_coords == fixed["point_coords"]  # not sent: the generator's point stays
    report = annotator.get(f"/api/images/{image.pk}/prefill-report").json()
    assert report == {
        "image": image.pk, "prefilled": 3, "kept": 1, "fixed": 1, "rejected": 1, "pending": 0, "added": 0,
    }  # fmt: skip


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
