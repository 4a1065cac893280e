"""Label Studio annotation events → Maskmill masks: created, unchanged, updated, deleted; brush,
polygon and rectangle regions; labels and annotator; bad input refused whole."""

from __future__ import annotations

import numpy as np
import pytest

from annotator.labelstudio.models import MaskLink
from annotator.labelstudio.regions import brush_result, controls
from annotator.masks.models import Mask
from engine.masks import decode_rle
from tests.annotator.labelstudio.conftest import CONFIG, basic_client

pytestmark = pytest.mark.django_db
BRUSH = controls(CONFIG)["brushlabels"]


def square(x0: int, y0: int, size: int) -> np.ndarray:
    mask = np.zeros((72, 96), bool)
    mask[y0 : y0 + size, x0 : x0 + size] = True
    return mask


def event(action: str, result: list, annotation_id: int = 9, completed_by=None) -> dict:
    return {
        "action": action,
        "task": {"id": 101, "data": {"image": "/data/upload/7/x.png"}},
        "annotation": {"id": annotation_id, "result": result, "completed_by": completed_by or 3},
        "project": {"id": 7},
    }


def post(client, project, payload):
    return client.post(f"/ls/{project.pk}/webhook", payload, format="json")


def test_annotation_events_keep_masks_in_step(project, linked, users, annotator_client):
    users["annotator"].email = "ann@example.org"
    users["annotator"].save()
    first = brush_result(square(10, 10, 20), "cat", BRUSH, region_id="r1")
    polygon = {
        "id": "p1",
        "type": "polygonlabels",
        "original_width": 96,
        "original_height": 72,
        "value": {"points": [[50, 50], [90, 50], [90, 90], [50, 90]], "polygonlabels": ["dog"]},
    }
    point = {"id": "k", "type": "keypointlabels", "value": {"x": 1, "y": 1, "keypointlabels": ["cat"]}}
    payload = event("ANNOTATION_CREATED", [first, polygon, point], completed_by={"email": "ANN@example.org"})
    answer = post(annotator_client, project, payload)
    assert answer.status_code == 200, answer.content
    assert answer.json()["created"] == 2
    masks = {m.label.name: m for m in Mask.objects.select_related("label", "annotator")}
    assert np.array_equal(decode_rle(masks["cat"].segmentation), square(10, 10, 20))
    dog = decode_rle(masks["dog"].segmentation)
    assert dog[40, 60] and not dog[10, 10] and 0.15 < dog.mean() < 0.17  # 40 % x 40 % of the image
    assert masks["cat"].annotator == users["annotator"] and masks["cat"].status == "accepted"
    assert MaskLink.objects.get(mask=masks["cat"]).ls_annotator == "ANN@example.org"

    # the same event again changes nothing
    again = post(annotator_client, project, payload).json()
    assert (again["created"], again["unchanged"]) == (0, 2)
    versions = {m.pk: m.version for m in Mask.objects.all()}

    # updated: the brush region moved, the polygon was removed
    moved = brush_result(square(30, 30, 10), "dog", BRUSH, region_id="r1")
    updated = post(annotator_client, project, event("ANNOTATION_UPDATED", [moved])).json()
    assert (updated["updated"], updated["deleted"]) == (1, 1)
    (mask,) = Mask.objects.all()
    assert np.array_equal(decode_rle(mask.segmentation), square(30, 30, 10)) and mask.label.name == "dog"
    assert mask.version == versions[mask.pk] + 1

    deleted = post(annotator_client, project, {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 9}]})
    assert deleted.json()["deleted"] == 1 and not Mask.objects.exists() and not MaskLink.objects.exists()


def test_a_rectangle_becomes_a_mask_through_the_project_model(project, linked, users, annotator_client):
    rect = {
        "id": "b1",
        "type": "rectanglelabels",
        "original_width": 96,
        "original_height": 72,
        "value": {"x": 10, "y": 10, "width": 50, "height": 85, "rectanglelabels": ["cat"]},
    }
    answer = post(annotator_client, project, event("ANNOTATION_CREATED", [rect]))
    assert answer.status_code == 200, answer.content
    (mask,) = Mask.objects.all()
    pixels = decode_rle(mask.segmentation)
    assert pixels.any() and not pixels[:, 62:].any()
    # an unknown Label Studio user: the caller of the webhook is credited
    assert mask.annotator == users["annotator"]


@pytest.mark.parametrize(
    "region, reason",
    [
        (
            lambda: {**brush_result(square(0, 0, 5), "cat", BRUSH, region_id="x"), "original_width": 50},
            "50x72",
        ),
        (lambda: _wrong_size_rle(), "an image of 96x72 needs"),
        (lambda: brush_result(square(0, 0, 5), "zebra", BRUSH, region_id="x"), "unknown label"),
        (
            lambda: {"id": "p", "type": "polygonlabels", "value": {"points": [[0, 0], [150, 0], [0, 10]]}},
            "outside 0-100",
        ),
        (lambda: {"id": "p", "type": "polygonlabels", "value": {"points": [[0, 0]]}}, "3 to"),
        (
            lambda: {
                "id": "r",
                "type": "rectanglelabels",
                "value": {"x": 90, "y": 0, "width": 20, "height": 5},
            },
            "outside",
        ),
        (lambda: {"id": "b", "type": "brushlabels", "value": {"format": "rle", "rle": "abc"}}, "byte values"),
        (lambda: "not an object", "must be an object"),
    ],
)
def test_bad_regions_are_a_400_and_nothing_is_written(project, linked, annotator_client, region, reason):
    good = brush_result(square(0, 0, 5), "cat", BRUSH, region_id="good")
    answer = post(annotator_client, project, event("ANNOTATION_CREATED", [good, region()]))
    assert answer.status_code == 400, answer.content
    assert reason in answer.json()["detail"]
    assert not Mask.objects.exists() and not MaskLink.objects.exists()


def _wrong_size_rle() -> dict:
    item = brush_result(np.ones((10, 10), bool), "cat", BRUSH, region_id="w")
    item.pop("original_width"), item.pop("original_height")
    return item


def test_other_webhook_actions(project, linked, annotator_client, users):
    assert post(annotator_client, project, {"action": "PROJECT_UPDATED"}).json()["status"] == "ignored"
    assert post(annotator_client, project, {"no": "action"}).status_code == 400
    assert post(annotator_client, project, {"action": "ANNOTATION_CREATED", "task": 3}).status_code == 400
    reviewer = basic_client(users["reviewer"])
    assert post(reviewer, project, event("ANNOTATION_CREATED", [])).status_code == 403


def test_webhook_without_a_connection_says_what_to_do(project, annotator_client):
    answer = post(annotator_client, project, event("ANNOTATION_CREATED", []))
    assert answer.status_code == 422 and "connect the project" in answer.json()["detail"]


def test_start_training_asks_for_a_maskmill_training_run(project, image, users, annotator_client):
    from annotator.masks.services import create_mask
    from annotator.training.models import ModelVersion, TrainingRun
    from engine.masks import encode_rle

    start = {"action": "START_TRAINING", "project": {"id": 7}}
    assert post(annotator_client, project, start).status_code == 403  # a manager's decision, as in Maskmill
    manager = basic_client(users["manager"])
    no_model = post(manager, project, start)
    assert no_model.status_code == 400 and "no model is configured" in str(no_model.json())
    project.active_model_version = ModelVersion.objects.create(family="custom", config={}, name="tiny")
    project.settings["training"] = {"min_masks": 1, "mode": "full"}
    project.save()
    too_few = post(manager, project, start)
    assert too_few.status_code == 400 and "needs at least 1" in str(too_few.json())
    create_mask(
        image, segmentation=encode_rle(square(0, 0, 9)), annotator=users["manager"], status="accepted"
    )
    queued = post(manager, project, start)
    assert queued.status_code == 200, queued.content
    run = TrainingRun.objects.get()
    assert queued.json() == {"status": "queued", "action": "START_TRAINING", "training_run": run.pk}
    assert run.trigger == "manual" and run.created_by == users["manager"]
    busy = post(manager, project, start)
    assert busy.status_code == 409 and "one run at a time" in busy.json()["detail"]


def test_two_tasks_showing_the_same_image_share_it(project, connection, storage, annotator_client):
    from annotator.images.models import Image
    from tests.integration.pipeline_support import shapes_png

    storage.routes["/data/upload/7/one.png"] = (200, {}, shapes_png(3))
    storage.routes["/data/upload/7/copy.png"] = (200, {}, shapes_png(3))
    for task_id, name, aid in ((401, "one", 31), (402, "copy", 32)):
        payload = event(
            "ANNOTATION_CREATED", [brush_result(square(0, 0, 8), "cat", BRUSH, region_id="r")], aid
        )
        payload["task"] = {"id": task_id, "data": {"image": f"/data/upload/7/{name}.png"}}
        answer = post(annotator_client, project, payload)
        assert answer.status_code == 200, answer.content
    assert Image.objects.count() == 1 and Mask.objects.count() == 2
    assert set(connection.tasks.values_list("ls_task_id", flat=True)) == {401, 402}
