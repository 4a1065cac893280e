"""Maskmill and a real Label Studio 1.23 server, both running on 127.0.0.1.

Push a project to Label Studio; connect Maskmill as the project's ML backend (basic auth: Maskmill
username + API token); ask for an interactive prediction and for batch pre-annotations through
Label Studio's own API; create an annotation in Label Studio through the SDK and pull it back;
every mask checked pixel for pixel. Maskmill runs a tiny random SAM (real code paths, milliseconds).

Skipped with the reason only when Label Studio cannot be installed; a failure instead under
``MASKMILL_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.authtoken.models import Token

from tests.integration import labelstudio_server as lss
from tests.integration.pipeline_support import shapes_png
from tests.integration.services import gate
from tests.tiny_models import LOW_THRESHOLDS, TINY_CONFIG, save_tiny_checkpoint

pytestmark = pytest.mark.integration
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    try:
        _, TIMINGS["install_s"] = lss.ensure_installed()
        TIMINGS["template_s"] = lss.prepare()  # a migrated database to start from (once)
    except lss.Unavailable as error:
        gate(f"Label Studio {lss.VERSION} cannot be installed: {error}")
    data = tmp_path_factory.mktemp("label-studio")
    started = time.monotonic()
    try:
        with lss.running(data) as url:
            TIMINGS["start_s"] = time.monotonic() - started
            yield url
    except lss.Unavailable as error:
        gate(f"Label Studio {lss.VERSION} cannot be started: {error}")


@pytest.fixture(scope="module")
def maskmill(django_db_setup, django_db_blocker):
    from pytest_django.live_server_helper import LiveServer

    with django_db_blocker.unblock():
        live = LiveServer("127.0.0.1:0")
    yield live
    live.stop()


@pytest.fixture
def platform(settings, tmp_path, transactional_db):
    from annotator.annotation import services
    from annotator.celery import app
    from annotator.stages import generation
    from annotator.training.services import forget_loaded_models, forget_model_versions

    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.MASKMILL_LOGITS_DIR = tmp_path / "logits"
    settings.MASKMILL_MODEL_TYPE = "custom"
    settings.MASKMILL_CHECKPOINT = str(save_tiny_checkpoint(tmp_path / "tiny.pt"))
    settings.MASKMILL_MODEL_CONFIG = TINY_CONFIG
    settings.MASKMILL_ON_DEMAND_EMBED = "web"
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    for forget in (
        services.reset_caches,
        forget_loaded_models,
        forget_model_versions,
        generation.forget_generators,
    ):
        forget()
    yield
    app.conf.task_always_eager = eager
    for forget in (
        services.reset_caches,
        forget_loaded_models,
        forget_model_versions,
        generation.forget_generators,
    ):
        forget()


def test_label_studio_round_trip(label_studio, maskmill, platform, django_user_model):
    from label_studio_sdk import LabelStudio

    from annotator.annotation.boxes import decode_prompt
    from annotator.images.models import Image
    from annotator.images.services import ingest_files
    from annotator.labelstudio import client, sync
    from annotator.labelstudio.models import TaskLink
    from annotator.labelstudio.regions import RegionError, brush_result, controls, label_config, polygon_mask
    from annotator.masks.models import Mask
    from annotator.projects.services import create_label, create_project
    from engine.formats.brush import brush_rle_to_mask
    from engine.masks import decode_rle

    began = time.monotonic()
    manager = django_user_model.objects.create_user(
        username="lead", password="lead-pw-123", email=lss.USERNAME
    )
    project = create_project(name="Shapes", creator=manager)
    project.settings.setdefault("generation", {})["semi_automatic"] = {**LOW_THRESHOLDS}
    project.save()
    create_label(project, name="shape", color="#ff8800")
    create_label(project, name="hole", color="#0088ff")
    uploads = [SimpleUploadedFile(f"s{seed}.png", shapes_png(seed)) for seed in range(3)]
    images = ingest_files(project, uploads, manager).created
    assert len(images) == 3
    ls = LabelStudio(base_url=label_studio, api_key=lss.TOKEN)
    http = ls._client_wrapper.httpx_client

    # --- push: a Label Studio project, one task per image; a second push changes nothing
    connection = client.save_connection(project, url=label_studio, token=lss.TOKEN, user=manager)
    first = sync.push(connection)
    assert first["tasks_created"] == 3, first
    connection.refresh_from_db()
    ls_project = connection.ls_project_id
    again = sync.push(connection)
    assert (again["tasks_created"], again["tasks_sent"], again["tasks_unchanged"]) == (0, 0, 3)
    tasks = list(ls.tasks.list(project=ls_project))
    assert len(tasks) == 3
    assert ls.projects.get(ls_project).label_config == label_config(
        [("shape", "#ff8800"), ("hole", "#0088ff")]
    )
    task_of = {link.image_id: link.ls_task_id for link in TaskLink.objects.all()}

    # --- Maskmill as the ML backend (basic auth: username + API token)
    token = Token.objects.create(user=manager)
    backend = ls.ml.create(
        project=ls_project,
        url=f"{maskmill.url}/ls/{project.pk}/",
        is_interactive=True,
        auth_method="BASIC_AUTH",
        basic_auth_user="lead",
        basic_auth_pass=token.key,
        title="maskmill",
    )
    assert ls.ml.get(backend.id).state == "CO", ls.ml.get(backend.id)

    # interactive: a positive click on the first image, through Label Studio's API
    image = images[0]
    context = {
        "result": [
            {
                "id": "click1",
                "type": "keypointlabels",
                "from_name": "click",
                "to_name": "image",
                "original_width": image.width,
                "original_height": image.height,
                "is_positive": True,
                "value": {"x": 30.0, "y": 40.0, "width": 1, "keypointlabels": ["shape"]},
            }
        ]
    }
    answer = http.request(
        f"api/ml/{backend.id}/interactive-annotating",
        method="POST",
        json={"task": task_of[image.pk], "context": context},
    )
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    (region,) = data["result"]
    assert region["type"] == "brushlabels" and region["value"]["brushlabels"] == ["shape"]
    got = brush_rle_to_mask(region["value"]["rle"], image.height, image.width)
    expected = decode_prompt(image, points=[[0.3 * image.width, 0.4 * image.height]], labels=[1])
    assert np.array_equal(got, decode_rle(expected.segmentation))
    assert data["model_version"].startswith("maskmill-")

    # batch: Label Studio's "retrieve predictions" action over every task
    retrieved = http.request(
        "api/dm/actions",
        method="POST",
        params={"id": "retrieve_tasks_predictions", "project": ls_project},
        json={"selectedItems": {"all": True, "excluded": []}},
    )
    assert retrieved.status_code == 200, retrieved.text
    for semi_image in images:
        predictions = [
            p
            for p in ls.predictions.list(task=task_of[semi_image.pk])
            if str(p.model_version).startswith("maskmill-") and p.model_version != sync.PUSH_MODEL_VERSION
        ]
        assert len(predictions) == 1, predictions
        masks = Mask.objects.filter(image=semi_image, source="semi").order_by("id")
        result = predictions[0].result
        assert len(result) == masks.count() > 0
        for item, mask in zip(result, masks):
            pixels = brush_rle_to_mask(item["value"]["rle"], semi_image.height, semi_image.width)
            assert np.array_equal(pixels, decode_rle(mask.segmentation))

    # --- an annotation made in Label Studio, pulled back pixel for pixel
    target = images[1]
    drawn = np.zeros((target.height, target.width), bool)
    drawn[10:30, 20:50] = True
    drawn[40:45, 5:90] = True
    control = controls(label_config([("shape", "#ff8800")]))["brushlabels"]
    brush = brush_result(drawn, "hole", control, region_id="drawn1")
    polygon = {
        "id": "poly1",
        "type": "polygonlabels",
        "from_name": "tag",
        "to_name": "image",
        "original_width": target.width,
        "original_height": target.height,
        "value": {"points": [[60, 60], [95, 60], [95, 95]], "polygonlabels": ["shape"]},
    }
    annotation = ls.annotations.create(task_of[target.pk], result=[brush], was_cancelled=False)
    before = Mask.objects.count()
    pulled = sync.pull(connection, manager)
    assert pulled["created"] == 1, pulled
    new = Mask.objects.order_by("-id").select_related("label", "annotator").first()
    assert Mask.objects.count() == before + 1
    assert np.array_equal(decode_rle(new.segmentation), drawn)
    assert new.label.name == "hole" and new.image_id == target.pk and new.status == "accepted"
    assert new.annotator == manager  # the Label Studio user with the same email
    repeat = sync.pull(connection, manager)
    assert (repeat["created"], repeat["updated"], repeat["unchanged"]) == (0, 0, 1)

    # Label Studio made a webhook to <backend>/webhook when the backend was added, without
    # credentials (so Maskmill refused it so far); with the header added (what the README says to
    # do), annotation events reach Maskmill as they happen.
    (hook,) = [w for w in ls.webhooks.list(project=ls_project) if w.url.endswith("/webhook")]
    ls.webhooks.update(hook.id, url=hook.url, headers={"Authorization": f"Token {token.key}"})
    ls.annotations.update(annotation.id, result=[brush, polygon])
    poly_mask = Mask.objects.order_by("-id").first()
    assert Mask.objects.count() == before + 2, "the ANNOTATION_UPDATED webhook made the polygon's mask"
    expected_poly = polygon_mask(polygon["value"]["points"], target.width, target.height)
    assert (
        np.array_equal(decode_rle(poly_mask.segmentation), expected_poly) and poly_mask.label.name == "shape"
    )
    edited = sync.pull(connection, manager)
    assert (edited["created"], edited["unchanged"]) == (0, 2), edited
    assert Image.objects.count() == 3 and TaskLink.objects.count() == 3

    # deleted in Label Studio → gone in Maskmill (the webhook; a pull finds nothing more to do)
    ls.annotations.delete(annotation.id)
    assert Mask.objects.count() == before
    gone = sync.pull(connection, manager)
    assert (gone["created"], gone["deleted"]) == (0, 0)
    # a pull with one bad annotation writes nothing, the good ones included (webhook removed, so
    # only the pull sees them)
    ls.webhooks.delete(hook.id)
    good = ls.annotations.create(task_of[images[0].pk], result=[brush], was_cancelled=False)
    bad_brush = brush_result(drawn, "zebra", control, region_id="bad")
    bad = ls.annotations.create(task_of[images[2].pk], result=[bad_brush], was_cancelled=False)
    with pytest.raises(RegionError, match="zebra"):
        sync.pull(connection, manager)
    assert Mask.objects.count() == before
    ls.annotations.delete(bad.id)
    fixed = sync.pull(connection, manager)
    assert fixed["created"] == 1 and Mask.objects.count() == before + 1
    ls.annotations.delete(good.id)
    sync.pull(connection, manager)

    # masks pushed as annotations come back from a pull as themselves, not as copies
    as_annotations = sync.push(connection, as_annotations=True)
    assert as_annotations["tasks_sent"] == 3, as_annotations
    for semi_image in images:
        (made,) = ls.annotations.list(id=task_of[semi_image.pk])
        expected = Mask.objects.filter(image=semi_image).order_by("id")
        assert len(made.result) == expected.count()
        for item, mask in zip(made.result, expected):
            pixels = brush_rle_to_mask(item["value"]["rle"], semi_image.height, semi_image.width)
            assert np.array_equal(pixels, decode_rle(mask.segmentation))
    count = Mask.objects.count()
    back = sync.pull(connection, manager)
    assert (back["created"], back["deleted"]) == (0, 0) and Mask.objects.count() == count, back
    # a personal access token (Label Studio 1.23's default kind) works the same: the SDK trades it
    # for short-lived access tokens, for the sync and for fetching task images
    personal = ls.tokens.create().token
    connection = client.save_connection(project, token=personal)
    assert sync.push(connection, as_annotations=True)["tasks_sent"] == 0
    assert sync.pull(connection, manager)["created"] == 0
    upload = ls.tasks.get(task_of[images[0].pk]).data["image"]
    with images[0].file.open("rb") as original:
        assert client.fetch_image(connection, upload) == original.read()
    TIMINGS["run_s"] = time.monotonic() - began
    print(
        f"label-studio {lss.VERSION}: install {TIMINGS['install_s']:.0f} s (0 = cached), migrated "
        f"template {TIMINGS['template_s']:.0f} s (0 = cached), start {TIMINGS['start_s']:.0f} s, "
        f"round trip {TIMINGS['run_s']:.0f} s"
    )
