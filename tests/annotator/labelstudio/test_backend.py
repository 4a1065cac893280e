"""The ML backend endpoints on the unit layer (classic segmenter, or the cheap deterministic
generator for batch pre-annotation): auth, interactive and batch predictions, image fetching
through the allow-list, and bad input answered 4xx with nothing written."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from annotator.images.models import Image
from annotator.labelstudio.models import TaskLink
from annotator.stages import generation
from annotator.stages.models import GenerationItem
from annotator.training.models import ModelVersion
from engine.formats.brush import brush_rle_to_mask
from tests.annotator.labelstudio.conftest import CONFIG, basic_client
from tests.conftest import image_bytes
from tests.integration.pipeline_support import shapes_png

pytestmark = pytest.mark.django_db


def click(x: float, y: float, label: str = "cat", positive: bool = True) -> dict:
    return {
        "id": "k1",
        "type": "keypointlabels",
        "from_name": "click",
        "to_name": "image",
        "original_width": 96,
        "original_height": 72,
        "is_positive": positive,
        "value": {"x": x, "y": y, "width": 1, "keypointlabels": [label]},
    }


def body(task_id: int = 101, context=None, data=None) -> dict:
    params = {"login": None, "password": None}
    if context is not None:
        params["context"] = context
    return {
        "tasks": [{"id": task_id, "data": data or {"image": "/data/upload/7/x.png"}}],
        "project": "7.1700000000",
        "label_config": CONFIG,
        "params": params,
    }


def test_health_setup_and_metrics_need_username_and_api_token(project, users, annotator_client):
    base = f"/ls/{project.pk}/"
    assert annotator_client.get(base).json()["status"] == "UP"
    assert annotator_client.get(base + "health").json()["model_version"] == "maskmill-classic"
    assert annotator_client.post(
        base + "setup", {"project": "7.1", "schema": CONFIG}, format="json"
    ).json() == {"model_version": "maskmill-classic"}
    assert "interactive_predictions" in annotator_client.get(base + "metrics").json()
    wrong = basic_client(users["annotator"])
    wrong.credentials(HTTP_AUTHORIZATION="Basic " + base64.b64encode(b"annotator:not-the-token").decode())
    refused = wrong.get(base + "health")
    assert refused.status_code == 401 and "Basic" in refused["WWW-Authenticate"]
    # the token of another user with this username is not enough
    other = basic_client(users["manager"])
    token = other._credentials["HTTP_AUTHORIZATION"].split()[1]
    _, key = base64.b64decode(token).decode().split(":")
    other.credentials(HTTP_AUTHORIZATION="Basic " + base64.b64encode(f"annotator:{key}".encode()).decode())
    assert other.get(base + "health").status_code == 401
    assert basic_client(users["outsider"]).get(base + "health").status_code == 404
    assert basic_client(users["reviewer"]).post(base + "predict", body(), format="json").status_code == 403


def test_interactive_click_answers_a_brush_region_from_the_project_model(project, linked, annotator_client):
    context = {"result": [click(50, 50)]}
    answer = annotator_client.post(f"/ls/{project.pk}/predict", body(context=context), format="json")
    assert answer.status_code == 200, answer.content
    data = answer.json()
    assert data["model_version"] == "maskmill-classic"
    (prediction,) = data["results"]
    (region,) = prediction["result"]
    assert region["type"] == "brushlabels" and region["from_name"] == "tag" and region["to_name"] == "image"
    assert region["value"]["brushlabels"] == ["cat"] and region["value"]["format"] == "rle"
    assert (region["original_width"], region["original_height"]) == (96, 72)
    mask = brush_rle_to_mask(region["value"]["rle"], 72, 96)
    assert mask.any() and mask[36, 48]  # the clicked pixel is in its mask
    assert 0 <= prediction["score"] <= 1 and prediction["model_version"] == "maskmill-classic"


def test_interactive_rectangle(project, linked, annotator_client):
    rect = {
        "id": "r1",
        "type": "rectanglelabels",
        "original_width": 96,
        "original_height": 72,
        "value": {"x": 10, "y": 10, "width": 50, "height": 85, "rectanglelabels": ["dog"]},
    }
    answer = annotator_client.post(
        f"/ls/{project.pk}/predict", body(context={"result": [rect]}), format="json"
    )
    assert answer.status_code == 200, answer.content
    (region,) = answer.json()["results"][0]["result"]
    mask = brush_rle_to_mask(region["value"]["rle"], 72, 96)
    assert region["value"]["brushlabels"] == ["dog"]
    assert mask.any() and not mask[:, 62:].any()  # nothing outside the rectangle


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda b: b["params"]["context"]["result"][0]["value"].update(x=130), "outside 0-100"),
        (lambda b: b["params"]["context"]["result"][0]["value"].update(x=-5), "outside 0-100"),
        (
            lambda b: b["params"]["context"]["result"][0]["value"].update(keypointlabels=["zebra"]),
            "unknown label",
        ),
        (lambda b: b.update(label_config="<View><Image name='image' value='$image'/></View>"), "BrushLabels"),
        (lambda b: b.update(label_config="<View"), "well-formed"),
        (lambda b: b.update(tasks=[{"id": "x"}]), "task id"),
        (lambda b: b.update(tasks=[]), "non-empty"),
        (lambda b: b["params"]["context"]["result"][0].update(type="choices"), "keypointlabels"),
        (lambda b: b["params"]["context"]["result"][0].update(original_width=640), "640x72"),
    ],
)
def test_bad_interactive_input_is_a_400_with_the_reason(project, linked, annotator_client, change, reason):
    request = body(context={"result": [click(50, 50)]})
    change(request)
    answer = annotator_client.post(f"/ls/{project.pk}/predict", request, format="json")
    assert answer.status_code == 400, answer.content
    assert reason in str(answer.json()["detail"])


def test_malformed_json_is_a_400(project, linked, annotator_client):
    answer = annotator_client.post(f"/ls/{project.pk}/predict", "{not json", content_type="application/json")
    assert answer.status_code == 400
    assert annotator_client.post(f"/ls/{project.pk}/predict", [1, 2], format="json").status_code == 400


def test_an_unlinked_task_is_fetched_from_the_label_studio_host_only(
    project, connection, storage, annotator_client
):
    storage.routes["/data/upload/7/new.png"] = (
        200,
        {"Content-Type": "image/png"},
        image_bytes(96, 72, seed=9),
    )
    request = body(task_id=555, context={"result": [click(40, 40)]}, data={"image": "/data/upload/7/new.png"})
    before = Image.objects.count()
    answer = annotator_client.post(f"/ls/{project.pk}/predict", request, format="json")
    assert answer.status_code == 200, answer.content
    assert Image.objects.count() == before + 1
    link = TaskLink.objects.get(connection=connection, ls_task_id=555)
    assert storage.requests == [("/data/upload/7/new.png", "Token legacy-token-123")]
    # asked again: the link is reused, nothing is fetched twice
    assert annotator_client.post(f"/ls/{project.pk}/predict", request, format="json").status_code == 200
    assert len(storage.requests) == 1 and TaskLink.objects.get(ls_task_id=555).pk == link.pk


@pytest.mark.parametrize(
    "url, reason",
    [
        ("http://169.254.169.254/latest/meta-data", "not on the project's Label Studio"),
        ("http://127.0.0.1:1/data/upload/x.png", "not on the project's Label Studio"),
        ("file:///etc/passwd", "only http(s)"),
        ("/data/upload/7/missing.png", "HTTP 404"),
        ("/data/upload/7/redirect.png", "HTTP 302"),
        ("/data/upload/7/huge.png", "byte limit"),
        ("/data/upload/7/text.txt", "cannot be used"),
        (None, "no image URL"),
    ],
)
def test_task_images_that_cannot_be_fetched_are_a_422_and_nothing_is_written(
    project, connection, storage, annotator_client, settings, url, reason
):
    settings.MASKMILL_URL_FETCH_MAX_BYTES = 10_000
    storage.routes["/data/upload/7/redirect.png"] = (302, {"Location": "http://169.254.169.254/"}, b"")
    storage.routes["/data/upload/7/huge.png"] = (200, {}, b"x" * 20_000)
    storage.routes["/data/upload/7/text.txt"] = (200, {}, b"hello, not an image")
    request = body(task_id=556, context={"result": [click(40, 40)]}, data={"image": url})
    answer = annotator_client.post(f"/ls/{project.pk}/predict", request, format="json")
    assert answer.status_code == 422, answer.content
    assert reason in answer.json()["detail"]
    assert not Image.objects.exists() and not TaskLink.objects.exists()
    assert all(path.startswith("/data/upload/7/") for path, _ in storage.requests)


def test_without_a_connection_an_unlinked_task_is_a_422(project, annotator_client):
    answer = annotator_client.post(
        f"/ls/{project.pk}/predict", body(context={"result": [click(5, 5)]}), format="json"
    )
    assert answer.status_code == 422 and "no Label Studio URL configured" in answer.json()["detail"]


# ------------------------------------------------------------------------------------------------
# Batch pre-annotation


@pytest.fixture
def cheap_model(project, settings):
    settings.MASKMILL_MASK_GENERATOR = "tests.integration.pipeline_support.components_generator"
    generation.forget_generators()
    version = ModelVersion.objects.create(family="custom", config={"encoder_embed_dim": 32}, name="tiny")
    project.active_model_version = version
    project.save()
    yield version
    generation.forget_generators()


@pytest.fixture
def shapes(project, connection):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from annotator.images.services import ingest_files

    created = ingest_files(
        project, [SimpleUploadedFile(f"s{i}.png", shapes_png(i)) for i in range(4)], None
    ).created
    for index, image in enumerate(created):
        TaskLink.objects.create(connection=connection, image=image, ls_task_id=200 + index)
    return created


def batch_body(task_ids) -> dict:
    return {
        "tasks": [{"id": t, "data": {"image": f"/data/upload/7/{t}.png"}} for t in task_ids],
        "label_config": CONFIG,
        "params": {"context": None},
    }


def test_batch_answers_semi_automatic_masks_computed_once_per_image(
    project, cheap_model, shapes, annotator_client
):
    url = f"/ls/{project.pk}/predict"
    answer = annotator_client.post(url, batch_body([200, 201, 202]), format="json")
    assert answer.status_code == 200, answer.content
    data = answer.json()
    assert data["queued"] == [] and len(data["results"]) == 3
    assert data["model_version"] == f"maskmill-{cheap_model.pk}"
    for (prediction,), image in zip(data["results"], shapes):
        assert prediction["result"], "the shapes images have objects"
        for region in prediction["result"]:
            mask = brush_rle_to_mask(region["value"]["rle"], image.height, image.width)
            assert mask.any()
    items = GenerationItem.objects.count()
    again = annotator_client.post(url, batch_body([200, 201, 202]), format="json").json()
    assert GenerationItem.objects.count() == items  # reused, not generated again
    assert again["results"] == data["results"]


def test_batch_past_its_budget_queues_the_rest_and_says_so(
    project, cheap_model, shapes, annotator_client, settings
):
    settings.MASKMILL_LS_PREDICT_BUDGET = 0
    from annotator.celery import app

    app.conf.task_always_eager = False  # no worker here: the queued items stay pending
    try:
        data = annotator_client.post(
            f"/ls/{project.pk}/predict", batch_body([200, 201]), format="json"
        ).json()
    finally:
        app.conf.task_always_eager = True
    assert data["results"] == [[], []] and data["queued"] == [200, 201]
    assert "queued" in data["detail"]
    assert GenerationItem.objects.filter(status="pending").count() == 2


def test_batch_without_a_sam_model_says_why(project, linked, annotator_client):
    data = annotator_client.post(f"/ls/{project.pk}/predict", batch_body([101]), format="json").json()
    assert data["results"] == [[]] and "classic segmenter" in data["detail"]


def test_a_bad_task_in_a_batch_writes_nothing(project, cheap_model, shapes, annotator_client):
    request = batch_body([200, 999])
    request["tasks"][1]["data"]["image"] = "http://elsewhere.example/x.png"
    answer = annotator_client.post(f"/ls/{project.pk}/predict", request, format="json")
    assert answer.status_code == 422
    assert not GenerationItem.objects.exists()


def test_brush_roundtrip_keeps_every_pixel():
    from annotator.labelstudio.regions import brush_result, controls

    rng = np.random.default_rng(1)
    mask = rng.random((48, 64)) > 0.5
    item = brush_result(mask, "cat", controls(CONFIG)["brushlabels"], region_id="a")
    assert np.array_equal(brush_rle_to_mask(item["value"]["rle"], 48, 64), mask)


def test_interactive_click_without_a_label_is_named_by_the_label_head(project, linked, annotator_client):
    """With an active label head, an unlabelled click's region gets the confident top suggestion,
    and the prediction lists the top labels with their probabilities."""
    import numpy as np

    from annotator.projects.models import Label
    from annotator.suggestions.models import HeadStatus, LabelHeadVersion
    from engine.labels import LabelHead

    cat, dog = Label.objects.get(project=project, name="cat"), Label.objects.get(project=project, name="dog")
    n = 34  # the classic feature set's size
    head = LabelHead(
        label_ids=np.array([cat.pk, dog.pk]),
        label_names=["cat", "dog"],
        mean=np.zeros(n, np.float32),
        scale=np.ones(n, np.float32),
        weights=np.zeros((n, 2), np.float32),
        bias=np.array([4.0, 0.0], np.float32),  # always cat, confidently
        kind="classic",
    )
    LabelHeadVersion.objects.create(
        project=project, kind="classic", data=head.to_bytes(), status=HeadStatus.ACTIVE
    )
    unlabelled = click(50, 50)
    unlabelled["value"]["keypointlabels"] = []
    answer = annotator_client.post(
        f"/ls/{project.pk}/predict", body(context={"result": [unlabelled]}), format="json"
    )
    assert answer.status_code == 200, answer.content
    (prediction,) = answer.json()["results"]
    assert prediction["result"][0]["value"]["brushlabels"] == ["cat"]
    assert [s["name"] for s in prediction["label_suggestions"]] == ["cat", "dog"]
    assert prediction["label_suggestions"][0]["probability"] > 0.9


def test_batch_fetches_unlinked_task_images_within_its_budget(
    project, cheap_model, connection, storage, annotator_client, settings
):
    settings.MASKMILL_LS_PREDICT_BUDGET = 0  # one image is always fetched; the rest waits
    for name in ("a", "b"):
        storage.routes[f"/data/upload/7/{name}.png"] = (200, {}, shapes_png(ord(name)))
    request = batch_body([301, 302])
    request["tasks"][0]["data"]["image"] = "/data/upload/7/a.png"
    request["tasks"][1]["data"]["image"] = "/data/upload/7/b.png"
    from annotator.celery import app

    app.conf.task_always_eager = False
    try:
        first = annotator_client.post(f"/ls/{project.pk}/predict", request, format="json").json()
    finally:
        app.conf.task_always_eager = True
    assert first["not_fetched"] == [302] and "not fetched" in first["detail"]
    assert (
        TaskLink.objects.filter(ls_task_id=301).exists()
        and not TaskLink.objects.filter(ls_task_id=302).exists()
    )
    settings.MASKMILL_LS_PREDICT_BUDGET = 20
    second = annotator_client.post(f"/ls/{project.pk}/predict", request, format="json").json()
    assert "not_fetched" not in second and second["queued"] == []
    assert all(result and result[0]["result"] for result in second["results"])
