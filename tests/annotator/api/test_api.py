"""REST API behaviour: tokens, filters and pagination, uploads, masks with RLE validation,
server-side geometry and optimistic concurrency (409)."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage
from rest_framework.test import APIClient

from annotator.images.models import Image
from annotator.masks.models import Mask
from engine.masks import decode_rle, encode_rle
from tests.conftest import add_image, image_bytes

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def square_rle(height: int = 48, width: int = 64) -> dict:
    mask = np.zeros((height, width), bool)
    mask[10:20, 5:30] = True
    return encode_rle(mask)


def test_token_auth_round_trip(users, project):
    client = APIClient()
    bad = client.post("/api/auth/token/", {"username": "manager", "password": "wrong"}, format="json")
    assert bad.status_code == 400 and "non_field_errors" in bad.json()
    token = client.post(
        "/api/auth/token/", {"username": "manager", "password": "manager-pw-123"}, format="json"
    )
    assert token.status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.json()['token']}")
    assert [p["name"] for p in client.get("/api/projects/").json()["results"]] == ["Cats"]


def test_upload_many_files_reports_created_duplicates_and_errors(users, project):
    client = client_for(users["manager"])
    good = image_bytes(seed=1)
    files = [
        SimpleUploadedFile("a.png", good, "image/png"),
        SimpleUploadedFile("a-copy.png", good, "image/png"),
        SimpleUploadedFile("b.txt", b"plain text", "text/plain"),
        SimpleUploadedFile("c.png", image_bytes(seed=2), "image/png"),
    ]
    response = client.post(f"/api/projects/{project.pk}/images/", {"files": files}, format="multipart")
    assert response.status_code == 201
    body = response.json()
    assert [c["name"] for c in body["created"]] == ["a.png", "c.png"]
    assert [d["name"] for d in body["duplicates"]] == ["a-copy.png"]
    assert body["errors"][0]["name"] == "b.txt" and "not an image" in body["errors"][0]["reason"]
    again = client.post(
        f"/api/projects/{project.pk}/images/",
        {"files": [SimpleUploadedFile("a.png", good)]},
        format="multipart",
    )
    assert again.status_code == 200 and again.json()["created"] == []


def test_upload_without_files_is_a_clear_400(users, project):
    response = client_for(users["manager"]).post(
        f"/api/projects/{project.pk}/images/", {}, format="multipart"
    )
    assert response.status_code == 400 and "files" in response.json()


def test_image_list_filters_and_paginates(users, project):
    images = [add_image(project, seed=i) for i in range(3)]
    Image.objects.filter(pk=images[0].pk).update(split="val", status="annotated")
    client = client_for(users["annotator"])
    page = client.get(f"/api/projects/{project.pk}/images/?page_size=2").json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"] and page["previous"] is None
    assert [r["id"] for r in client.get(page["next"]).json()["results"]] == [images[2].pk]
    val = client.get(f"/api/projects/{project.pk}/images/?split=val").json()
    assert [r["id"] for r in val["results"]] == [images[0].pk]
    done = client.get(f"/api/projects/{project.pk}/images/?status=annotated,reviewed").json()
    assert done["count"] == 1
    bad = client.get(f"/api/projects/{project.pk}/images/?status=finished")
    assert bad.status_code == 400 and "unknown status" in bad.json()["status"][0]


def test_managers_move_an_image_to_another_stage(users, project):
    image = add_image(project)
    moved = client_for(users["manager"]).patch(
        f"/api/images/{image.pk}/", {"stage": "semi_automatic"}, format="json"
    )
    assert moved.status_code == 200 and moved.json()["stage"] == "semi_automatic"
    image.refresh_from_db()
    assert image.effective_stage == "semi_automatic"
    bad = client_for(users["manager"]).patch(f"/api/images/{image.pk}/", {"stage": "later"}, format="json")
    assert bad.status_code == 400 and "stage" in bad.json()


def test_image_detail_and_file(users, project):
    image = add_image(project, seed=4, width=50, height=40)
    client = client_for(users["reviewer"])
    detail = client.get(f"/api/images/{image.pk}/").json()
    assert {k: detail[k] for k in ("id", "project", "width", "height", "status", "split", "sha256")} == {
        "id": image.pk, "project": project.pk, "width": 50, "height": 40, "status": "new", "split": "train",
        "sha256": image.sha256,
    }  # fmt: skip
    original = client.get(detail["file_url"])
    assert original.status_code == 200 and original["Content-Type"] == "image/png"
    assert b"".join(original.streaming_content) == image_bytes(50, 40, seed=4)
    thumb = client.get(f"/api/images/{image.pk}/file?size=20")
    assert thumb["Content-Type"] == "image/jpeg"
    import io

    assert max(PILImage.open(io.BytesIO(thumb.content)).size) == 20


def test_mask_create_computes_geometry_and_round_trips_the_rle(users, project):
    image = add_image(project)
    label = project.labels.first()
    rle = square_rle()
    client = client_for(users["annotator"])
    response = client.post(
        f"/api/images/{image.pk}/masks/",
        {
            "segmentation": rle,
            "label": label.pk,
            "bbox": [0, 0, 1, 1],
            "area": 1,
            "seconds": 12.5,
            "clicks": 3,
            "point_coords": [[7, 12]],
            "predicted_iou": 0.9,
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["bbox"] == [5.0, 10.0, 24.0, 9.0] and body["area"] == 250  # computed (SA-1B: no +1)
    assert body["annotator"] == users["annotator"].pk and body["version"] == 1 and body["source"] == "manual"
    assert np.array_equal(decode_rle(body["segmentation"]), decode_rle(rle))
    listed = client.get(f"/api/images/{image.pk}/masks/").json()
    assert [m["id"] for m in listed] == [body["id"]]


def test_uncompressed_rle_is_accepted_and_stored_compressed(users, project):
    image = add_image(project, width=4, height=3)
    rle = {"size": [3, 4], "counts": [2, 3, 7]}
    response = client_for(users["manager"]).post(
        f"/api/images/{image.pk}/masks/", {"segmentation": rle}, format="json"
    )
    assert response.status_code == 201
    assert isinstance(response.json()["segmentation"]["counts"], str) and response.json()["area"] == 3


@pytest.mark.parametrize(
    ("segmentation", "message"),
    [
        ({"size": [10, 10], "counts": "PP"}, "does not match the image size"),
        ({"size": [48, 64], "counts": [1, 2]}, "add up to"),
        ({"size": [48, 64]}, "exactly the keys"),
        ("not an object", "exactly the keys"),
    ],
)
def test_bad_rle_is_a_400_that_says_why(users, project, segmentation, message):
    image = add_image(project)
    response = client_for(users["manager"]).post(
        f"/api/images/{image.pk}/masks/", {"segmentation": segmentation}, format="json"
    )
    assert response.status_code == 400
    assert message in response.json()["segmentation"][0]


def test_label_of_another_project_is_refused(users, project, other_project):
    image = add_image(project)
    foreign_label = other_project.labels.first()
    response = client_for(users["manager"]).post(
        f"/api/images/{image.pk}/masks/",
        {"segmentation": square_rle(), "label": foreign_label.pk},
        format="json",
    )
    assert response.status_code == 400 and "another project" in response.json()["label"][0]


def test_stale_version_is_a_409_and_nothing_is_overwritten(users, project):
    image = add_image(project)
    client = client_for(users["annotator"])
    created = client.post(
        f"/api/images/{image.pk}/masks/", {"segmentation": square_rle()}, format="json"
    ).json()
    url = f"/api/masks/{created['id']}/"
    first = client.patch(url, {"version": 1, "status": "accepted"}, format="json")
    assert first.status_code == 200 and first.json()["version"] == 2
    stale = client.patch(url, {"version": 1, "status": "rejected"}, format="json")
    assert stale.status_code == 409
    assert "version 1" in stale.json()["detail"] and stale.json()["current_version"] == 2
    assert Mask.objects.get(pk=created["id"]).status == "accepted"
    assert client.delete(f"{url}?version=1").status_code == 409
    missing_version = client.patch(url, {"status": "rejected"}, format="json")
    assert missing_version.status_code == 400 and "version" in missing_version.json()
    assert client.delete(f"{url}?version=2").status_code == 204
    assert not Mask.objects.filter(pk=created["id"]).exists()


def test_accepting_a_mask_stamps_accepted_at_and_new_rle_recomputes_geometry(users, project):
    image = add_image(project)
    client = client_for(users["annotator"])
    created = client.post(
        f"/api/images/{image.pk}/masks/", {"segmentation": square_rle()}, format="json"
    ).json()
    mask = np.zeros((48, 64), bool)
    mask[0:4, 0:2] = True
    updated = client.patch(
        f"/api/masks/{created['id']}/",
        {"version": 1, "segmentation": encode_rle(mask), "status": "accepted"},
        format="json",
    ).json()
    assert updated["area"] == 8 and updated["bbox"] == [0.0, 0.0, 1.0, 3.0]
    assert Mask.objects.get(pk=created["id"]).accepted_at is not None


def test_reviewers_change_only_status_and_note(users, project):
    image = add_image(project)
    created = (
        client_for(users["annotator"])
        .post(f"/api/images/{image.pk}/masks/", {"segmentation": square_rle()}, format="json")
        .json()
    )
    reviewer = client_for(users["reviewer"])
    relabel = reviewer.patch(f"/api/masks/{created['id']}/", {"version": 1, "label": None}, format="json")
    assert relabel.status_code == 403
    reject = reviewer.patch(
        f"/api/masks/{created['id']}/",
        {"version": 1, "status": "rejected", "review_note": "misses the tail"},
        format="json",
    )
    assert reject.status_code == 200 and reject.json()["review_note"] == "misses the tail"


def test_validation_errors_name_the_field(users, project):
    client = client_for(users["manager"])
    label = client.post(f"/api/projects/{project.pk}/labels/", {"name": "cat"}, format="json")
    assert label.status_code == 400 and "already has a label" in label.json()["name"][0]
    color = client.post(f"/api/projects/{project.pk}/labels/", {"name": "owl", "color": "red"}, format="json")
    assert color.status_code == 400 and "#rrggbb" in color.json()["color"][0]
    member = client.post(
        f"/api/projects/{project.pk}/memberships/", {"user": "annotator", "role": "annotator"}, format="json"
    )
    assert member.status_code == 400 and "already a member" in member.json()["user"][0]
    role = client.post(
        f"/api/projects/{project.pk}/memberships/", {"user": "outsider", "role": "boss"}, format="json"
    )
    assert role.status_code == 400 and "role" in role.json()
    stage = client.patch(f"/api/projects/{project.pk}/", {"stage": "someday"}, format="json")
    assert stage.status_code == 400 and "stage" in stage.json()


def test_slugs_are_unique_and_checked(users, project, other_project):
    client = client_for(users["admin"])
    taken = client.post("/api/projects/", {"name": "Another", "slug": project.slug}, format="json")
    assert taken.status_code == 400 and "slug" in taken.json()
    moved = client.patch(f"/api/projects/{other_project.pk}/", {"slug": project.slug}, format="json")
    assert moved.status_code == 400 and "slug" in moved.json()
    malformed = client.post("/api/projects/", {"name": "Another", "slug": "no spaces/here"}, format="json")
    assert malformed.status_code == 400 and "slug" in malformed.json()
    made = client.post("/api/projects/", {"name": "Another Name"}, format="json")
    assert made.status_code == 201 and made.json()["slug"] == "another-name"


def test_the_last_manager_cannot_be_removed(users, project):
    client = client_for(users["manager"])
    mine = project.memberships.get(user=users["manager"])
    response = client.delete(f"/api/memberships/{mine.pk}/")
    assert response.status_code == 400 and "at least one manager" in response.json()["role"][0]


def test_project_settings_carry_stage_parameters(users, project):
    client = client_for(users["manager"])
    body = client.get(f"/api/projects/{project.pk}/").json()
    assert body["settings"]["seconds_per_mask_hint"] == 30
    assert body["settings"]["generation"]["fully_automatic"]["pred_iou_thresh"] == 0.88
    bad = client.patch(
        f"/api/projects/{project.pk}/", {"settings": {"seconds_per_mask_hint": -1}}, format="json"
    )
    assert bad.status_code == 400


def test_openapi_schema_and_docs_are_served(users):
    client = client_for(users["manager"])
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    expected = ["/api/projects/", "/api/projects/{id}/images/", "/api/images/{id}/masks/", "/api/masks/{id}/"]
    for path in [*expected, "/api/auth/token/", "/api/images/{id}/file"]:
        assert path in paths, sorted(paths)
    assert client.get("/api/docs/").status_code == 200


def test_login_page_and_projects_page_with_thumbnails(users, project, client):
    image = add_image(project)
    assert client.get("/").status_code == 302  # to the login page
    login = client.post("/accounts/login/", {"username": "annotator", "password": "annotator-pw-123"})
    assert login.status_code == 302
    page = client.get("/").content.decode()
    assert "Cats" in page and f"/api/images/{image.pk}/file?size=256" in page
    assert client.get(f"/api/images/{image.pk}/file?size=256").status_code == 200  # session auth works
    assert client.get(f"/projects/{project.pk}/").status_code == 200
    client.logout()
    client.login(username="outsider", password="outsider-pw-123")
    assert "Cats" not in client.get("/").content.decode()
    assert client.get(f"/projects/{project.pk}/").status_code == 404
