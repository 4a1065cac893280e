"""Exports through the API and the page: managers only (annotators 403, strangers 404), the task
runs (eagerly here), downloads go through the permission check, bad input is a clear 400, and
cancel/resume move the job."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from annotator.exports import services
from annotator.exports.models import Export
from annotator.jobs import JobStatus
from annotator.masks.models import Mask

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def start(client, project, captured, **body):
    with captured(execute=True):
        return client.post(f"/api/projects/{project.pk}/exports/", body, format="json")


def test_manager_exports_through_the_api_and_downloads(filled, users, django_capture_on_commit_callbacks):
    project, _ = filled
    manager = client_for(users["manager"])
    answer = start(
        manager, project, django_capture_on_commit_callbacks, format="coco", filter={"labels": ["cat"]}
    )
    assert answer.status_code == 201, answer.json()
    export_id = answer.json()["id"]
    detail = manager.get(f"/api/exports/{export_id}/").json()
    assert detail["status"] == "done" and detail["masks_done"] == 6 and detail["images_done"] == 3
    download = manager.get(f"/api/exports/{export_id}/files/instances.json")
    assert download.status_code == 200
    body = json.loads(b"".join(download.streaming_content))
    assert len(body["annotations"]) == 6
    assert manager.get(f"/api/exports/{export_id}/files/..%2Fsecret").status_code == 404
    assert manager.get(f"/api/exports/{export_id}/files/missing.json").status_code == 404
    listing = manager.get(f"/api/projects/{project.pk}/exports/").json()
    assert [row["id"] for row in listing["results"]] == [export_id]


def test_only_managers_reach_exports(filled, users, other_project):
    project, _ = filled
    export = services.run_export(services.create_export(project, "png", enqueue=False).pk)
    for name, code in (("annotator", 403), ("reviewer", 403), ("outsider", 404)):
        client = client_for(users[name])
        assert client.get(f"/api/exports/{export.pk}/").status_code == code
        assert client.get(f"/api/exports/{export.pk}/files/png_masks.tar").status_code == code
        assert (
            client.post(f"/api/projects/{project.pk}/exports/", {"format": "png"}, format="json").status_code
            == code
        )
        assert client.post(f"/api/exports/{export.pk}/cancel").status_code == code
    assert APIClient().get(f"/api/exports/{export.pk}/").status_code in (401, 403)
    # The page's download view: the same rule.
    from django.test import Client

    browser = Client()
    browser.force_login(users["annotator"])
    assert browser.get(reverse("export-download", args=[export.pk, "png_masks.tar"])).status_code == 403
    assert browser.get(reverse("exports-page", args=[project.pk])).status_code == 403
    browser.force_login(users["outsider"])
    assert browser.get(reverse("export-download", args=[export.pk, "png_masks.tar"])).status_code == 404
    browser.force_login(users["manager"])
    page_download = browser.get(reverse("export-download", args=[export.pk, "png_masks.tar"]))
    assert page_download.status_code == 200 and page_download["Content-Disposition"].startswith("attachment")
    assert client_for(users["manager"]).get(f"/api/projects/{other_project.pk}/exports/").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"format": "tiff"}, "format"),
        ({"format": "coco", "filter": {"mask_status": "maybe"}}, "mask_status"),
        ({"format": "coco", "filter": {"colour": "red"}}, "colour"),
        ({"format": "coco", "filter": {"min_predicted_iou": "high"}}, "min_predicted_iou"),
        ({"format": "coco", "filter": {"created_after": "yesterday"}}, "created_after"),
        ({"format": "coco", "filter": ["x"]}, "filter"),
        ({"format": "sa1b", "options": {"shard_size": 0}}, "shard_size"),
        ({"format": "sa1b", "options": {"shard_size": "1e9"}}, "shard_size"),
        ({"format": "sa1b", "options": {"blur_faces": "perhaps"}}, "blur_faces"),
        ({"format": "coco", "options": {"shard_size": 5}}, "shard_size"),
        ({"format": "label_studio", "options": {"image_url": "http://x/{secret}"}}, "image_url"),
    ],
)
def test_bad_requests_are_400_with_the_field(filled, users, body, field):
    project, _ = filled
    answer = client_for(users["manager"]).post(f"/api/projects/{project.pk}/exports/", body, format="json")
    assert answer.status_code == 400
    assert field in json.dumps(answer.json())
    assert not Export.objects.exists()


def test_cancel_and_resume(filled, users, django_capture_on_commit_callbacks):
    project, _ = filled
    manager = client_for(users["manager"])
    export = services.create_export(project, "sa1b", enqueue=False)
    cancelled = manager.post(f"/api/exports/{export.pk}/cancel").json()
    assert cancelled["status"] == "cancelled"
    assert services.run_export(export.pk).status == JobStatus.CANCELLED  # a late delivery does nothing
    with django_capture_on_commit_callbacks(execute=True):
        resumed = manager.post(f"/api/exports/{export.pk}/resume")
    assert resumed.status_code == 200
    export.refresh_from_db()
    assert export.status == JobStatus.DONE and export.images_done == 3
    assert manager.post(f"/api/exports/{export.pk}/resume").status_code == 400  # done: nothing to resume


def test_cancel_while_running_stops_the_writer(filled, monkeypatch):
    project, _ = filled
    export = services.create_export(project, "coco", enqueue=False)
    monkeypatch.setattr(services, "PROGRESS_EVERY_SECONDS", 0.0)

    def cancel_now(row):
        services.cancel_export(row)

    done = services.run_export(export.pk, on_progress=cancel_now)
    assert done.status == JobStatus.CANCELLED and done.images_done < 3
    assert not list(services.export_dir(export).glob("*.json"))  # no half file left


def test_page_starts_an_export_with_the_form_filter(filled, users, django_capture_on_commit_callbacks):
    from django.test import Client

    project, _ = filled
    browser = Client()
    browser.force_login(users["manager"])
    page = browser.get(reverse("exports-page", args=[project.pk]))
    assert page.status_code == 200 and b'data-testid="export-form"' in page.content
    with django_capture_on_commit_callbacks(execute=True):
        answer = browser.post(
            reverse("exports-page", args=[project.pk]),
            {"format": "sa1b", "mask_status": ["accepted", "proposed"], "source": ["auto"], "shard_size": "1",
             "blur_faces": "true", "coco_polygons": "true"},
        )  # fmt: skip
    assert answer.status_code == 302
    export = Export.objects.get()
    assert export.filter == {"mask_status": ["accepted", "proposed"], "source": ["auto"]}
    assert export.options == {"shard_size": 1, "blur_faces": True}
    assert export.status == JobStatus.DONE and len(export.manifest["shards"]) == 3
    assert export.manifest["privacy"]["file"] == "privacy.json"
    listing = browser.get(reverse("exports-page", args=[project.pk]))
    assert reverse("export-download", args=[export.pk, "sa_000000.tar"]).encode() in listing.content
    bad = browser.post(
        reverse("exports-page", args=[project.pk]), {"format": "coco", "min_stability": "2"}, follow=True
    )
    assert b"min_stability" in bad.content and Export.objects.count() == 1


def test_import_api_all_or_nothing(filled, twin, users):
    project, _ = filled
    export = services.run_export(services.create_export(project, "coco", enqueue=False).pk)
    data = services.download_path(export, "instances.json").read_bytes()
    manager = client_for(users["manager"])
    from django.core.files.uploadedfile import SimpleUploadedFile

    answer = manager.post(
        f"/api/projects/{twin.pk}/imports",
        {"file": SimpleUploadedFile("instances.json", data), "format": "coco"},
        format="multipart",
    )
    assert answer.status_code == 201, answer.json()
    assert answer.json()["created"] == 12
    broken = manager.post(
        f"/api/projects/{twin.pk}/imports",
        {
            "file": SimpleUploadedFile("x.json", b'{"images": [], "annotations": [{"id": 1}]}'),
            "format": "coco",
        },
        format="multipart",
    )
    assert broken.status_code == 400 and "image_id" in broken.json()["problems"][0]
    assert Mask.objects.filter(project=twin).count() == 12
    annotator = client_for(users["annotator"])
    assert (
        annotator.post(
            f"/api/projects/{project.pk}/imports",
            {"file": SimpleUploadedFile("x.json", data), "format": "coco"},
            format="multipart",
        ).status_code
        == 403
    )
