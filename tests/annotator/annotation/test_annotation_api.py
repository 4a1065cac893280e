"""predict / prepare over HTTP: validation with reasons, access rules, the classic segmenter's
answers (COCO RLE at image resolution, logits handles, stored masks as prompts)."""

from __future__ import annotations

import numpy as np
import pytest
from rest_framework.test import APIClient

from annotator.annotation import services
from engine.masks import decode_rle, encode_rle
from tests.annotator.annotation_fixtures import add_picture, disk_mask, disk_picture, iou, need_classic

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_caches():
    services.reset_caches()
    yield
    services.reset_caches()


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def image(project):
    return add_picture(project, disk_picture())


def predict(client, image, body):
    return client.post(f"/api/images/{image.pk}/predict", body, format="json")


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"points": [[10, "a"]], "labels": [1]}, "points", "pairs of finite numbers"),
        ({"points": [[10, 10, 3]], "labels": [1]}, "points", "[x, y] pairs"),
        ({"points": [[500, 10]], "labels": [1]}, "points", "outside the 160x120"),
        ({"points": [[10, 10]], "labels": [2]}, "labels", "1 (object) or 0"),
        ({"points": [[10, 10]], "labels": [1, 0]}, "labels", "2 labels for 1 points"),
        ({"points": [[10, 10]], "labels": [True]}, "labels", "1 (object) or 0"),
        ({"box": [50, 50, 10, 10]}, "box", "x0 <= x1"),
        ({"box": [1, 2, 3]}, "box", "four finite numbers"),
        ({"box": [0, 0, 999, 10]}, "box", "outside the 160x120"),
        ({"points": [[1, 1]], "labels": [1], "mask_input": "garbage"}, "mask_input", "logits_handle"),
        ({"points": [[1, 1]], "labels": [1], "mask_input": 7}, "mask_input", "logits_handle"),
        ({"points": [[1, 1]], "labels": [1], "mask_index": -1}, "mask_index", "index"),
        ({"points": [[1, 1]], "labels": [1], "multimask": "yes"}, "multimask", "true or false"),
        ({"points": [[1, 1]], "labels": [1], "colour": "red"}, "body", "unknown field(s) colour"),
        ({}, "body", "at least one prompt"),
        ({"points": [], "labels": [], "box": None}, "body", "at least one prompt"),
    ],
)
def test_malformed_prompts_are_400_with_the_reason(users, image, body, field, reason):
    response = predict(client_for(users["annotator"]), image, body)
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert reason in response.json()[field]


def test_non_members_get_404_and_reviewers_403(users, image):
    body = {"points": [[80, 60]], "labels": [1]}
    assert predict(client_for(users["outsider"]), image, body).status_code == 404
    assert predict(client_for(users["reviewer"]), image, body).status_code == 403
    assert client_for(users["outsider"]).post(f"/api/images/{image.pk}/prepare").status_code == 404
    assert client_for(users["reviewer"]).post(f"/api/images/{image.pk}/prepare").status_code == 403
    assert APIClient().post(f"/api/images/{image.pk}/predict", body, format="json").status_code in (401, 403)


def test_classic_segmenter_answers_rle_masks_at_image_resolution(users, image):
    need_classic()
    client = client_for(users["annotator"])
    assert client.post(f"/api/images/{image.pk}/prepare").json() == {"state": "ready"}
    response = predict(client, image, {"points": [[80, 60]], "labels": [1], "multimask": True})
    assert response.status_code == 200, response.content
    answer = response.json()
    assert answer["fallback"] is True and answer["model"] == "classic" and answer["model_version"] is None
    assert answer["logits_handle"].startswith("lg-")
    assert len(answer["masks"]) == 3
    masks = [decode_rle(m["segmentation"]) for m in answer["masks"]]
    assert all(m.shape == (120, 160) for m in masks)
    best = masks[int(np.argmax([m["score"] for m in answer["masks"]]))]
    assert max(iou(m, disk_mask()) for m in masks) > 0.8
    assert iou(best, disk_mask()) > 0.5


def test_logits_handle_refines_and_is_private_to_its_user(users, image, django_user_model):
    need_classic()
    from annotator.projects.services import add_member

    client = client_for(users["annotator"])
    first = predict(client, image, {"points": [[80, 60]], "labels": [1]}).json()
    second = predict(
        client,
        image,
        {"points": [[80, 60], [150, 110]], "labels": [1, 0], "mask_input": first["logits_handle"],
         "mask_index": 0, "multimask": False},
    ).json()  # fmt: skip
    assert "notice" not in second
    assert len(second["masks"]) == 1
    assert second["logits_handle"] != first["logits_handle"]

    other = django_user_model.objects.create_user(username="other-annotator", password="x-pw-123456")
    add_member(image.project, user=other, role="annotator")
    stolen = predict(
        client_for(other), image, {"points": [[80, 60]], "labels": [1], "mask_input": first["logits_handle"]}
    ).json()
    assert "expired" in stolen["notice"]  # not found for another user: ignored, never used

    only_handle = predict(client_for(other), image, {"mask_input": first["logits_handle"]})
    assert only_handle.status_code == 400
    assert "expired" in only_handle.json()["mask_input"]

    out_of_range = predict(
        client,
        image,
        {"points": [[80, 60]], "labels": [1], "mask_input": first["logits_handle"], "mask_index": 5},
    )
    assert out_of_range.status_code == 400
    assert "3 candidate" in out_of_range.json()["mask_index"]


def test_stored_mask_becomes_the_mask_prompt(users, image, project):
    need_classic()
    from annotator.masks.services import create_mask

    stored = create_mask(image, segmentation=encode_rle(disk_mask()), annotator=users["annotator"])
    client = client_for(users["annotator"])
    answer = predict(client, image, {"mask_input": f"mask:{stored.pk}", "multimask": False})
    assert answer.status_code == 200, answer.content
    assert iou(decode_rle(answer.json()["masks"][0]["segmentation"]), disk_mask()) > 0.8

    elsewhere = add_picture(project, disk_picture(seed=3), name="other.png")
    foreign = create_mask(elsewhere, segmentation=encode_rle(disk_mask()), annotator=users["annotator"])
    refused = predict(
        client, image, {"points": [[80, 60]], "labels": [1], "mask_input": f"mask:{foreign.pk}"}
    )
    assert refused.status_code == 400
    assert f"mask {foreign.pk} is not a mask of image {image.pk}" in refused.json()["mask_input"]


def test_box_prompt_with_the_classic_segmenter(users, image):
    need_classic()
    answer = predict(client_for(users["annotator"]), image, {"box": [45, 25, 115, 95], "multimask": False})
    assert answer.status_code == 200, answer.content
    assert iou(decode_rle(answer.json()["masks"][0]["segmentation"]), disk_mask()) > 0.7
