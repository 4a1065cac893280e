"""Label suggestions in the platform: training and gating of a project's head from its labelled
masks, suggestions through the API, kept-suggestion bookkeeping, label changes after training, the
threshold trigger, and "find every <label>" with a real (tiny) SAM."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from PIL import Image as PILImage
from rest_framework.test import APIClient

from annotator.images.models import Split
from annotator.masks.models import Mask, MaskStatus
from annotator.masks.services import create_mask
from annotator.projects.services import create_label, create_project
from annotator.suggestions import services
from annotator.suggestions.models import HeadStatus, LabelHeadVersion
from engine.labels import LabelHeadError
from engine.masks import encode_rle
from tests.annotator.annotation_fixtures import add_picture, tiny_sam  # noqa: F401
from tests.label_data import NAMES, synthetic_scene_masks

pytestmark = pytest.mark.django_db


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def fruit(users):
    """A classic-segmenter project with the synthetic classes as labels."""
    project = create_project(name="Fruit", creator=users["manager"])
    from annotator.projects.services import add_member

    add_member(project, user=users["annotator"], role="annotator")
    labels = {key: create_label(project, name=name) for key, name in NAMES.items()}
    return project, labels


def add_scenes(project, labels, n_images: int, seed: int, split: str, status=MaskStatus.ACCEPTED) -> list:
    """Images of synthetic scenes with one accepted, labelled mask per object."""
    samples = synthetic_scene_masks(n_images=n_images, seed=seed)
    images, made = {}, []
    for pixels, region, key in samples:
        if id(pixels) not in images:
            image = add_picture(project, png(pixels), name=f"s{seed}-{len(images)}.png")
            image.split = split
            image.save(update_fields=["split"])
            images[id(pixels)] = image
        made.append(
            create_mask(
                images[id(pixels)],
                segmentation=encode_rle(region),
                annotator=None,
                label=labels[key] if status == MaskStatus.ACCEPTED else None,
                status=status,
            )
        )
    return made


def test_a_head_is_trained_evaluated_on_val_and_promoted(fruit, settings):
    settings.MASKMILL_LABEL_RETRAIN_EVERY = 0
    project, labels = fruit
    add_scenes(project, labels, 10, seed=1, split=Split.TRAIN)
    add_scenes(project, labels, 5, seed=2, split=Split.VAL)
    row = services.train_head(project)
    assert row.status == HeadStatus.ACTIVE and row.kind == "classic" and row.model_version is None
    assert row.metrics["top1"] >= 0.7, row.metrics
    assert row.metrics["top3"] >= row.metrics["top1"]
    assert set(row.metrics["per_label"]) == set(NAMES.values())
    assert len(row.metrics["confusion"]["matrix"]) == 4
    assert "first one" in row.reason


def test_the_gate_keeps_a_worse_head_as_candidate(fruit, settings):
    settings.MASKMILL_LABEL_RETRAIN_EVERY = 0
    project, labels = fruit
    add_scenes(project, labels, 8, seed=3, split=Split.TRAIN)
    add_scenes(project, labels, 4, seed=4, split=Split.VAL)
    active = services.train_head(project)
    val = services.labelled_set(project, None, Split.VAL)
    promote, reason = services.gate({"top1": 0.0}, active, val)
    assert not promote and "kept as candidate" in reason
    promote, _ = services.gate({"top1": 1.0}, active, val)
    assert promote
    second = services.train_head(project)  # same data: as good, promoted, the first retired
    active.refresh_from_db()
    assert second.status == HeadStatus.ACTIVE and active.status == HeadStatus.RETIRED


def test_too_few_labelled_masks_say_how_many_are_needed(fruit, users, settings):
    settings.MASKMILL_LABEL_RETRAIN_EVERY = 0
    project, labels = fruit
    with pytest.raises(LabelHeadError, match="at least 2 labels with 5"):
        services.train_head(project)
    client = APIClient()
    client.force_authenticate(users["manager"])
    answer = client.post(f"/api/projects/{project.pk}/label-head/train")
    assert answer.status_code == 409 and "at least 2 labels" in answer.json()["detail"]
    image = add_scenes(project, labels, 1, seed=5, split=Split.TRAIN, status=MaskStatus.PROPOSED)[0].image
    client.force_authenticate(users["annotator"])
    answer = client.get(f"/api/images/{image.pk}/suggestions").json()
    assert answer["available"] is False and "no label suggestions yet" in answer["reason"]


def test_api_suggests_top3_for_proposed_masks_and_respects_label_changes(fruit, users, settings):
    settings.MASKMILL_LABEL_RETRAIN_EVERY = 0
    project, labels = fruit
    add_scenes(project, labels, 10, seed=6, split=Split.TRAIN)
    client = APIClient()
    client.force_authenticate(users["manager"])
    assert client.post(f"/api/projects/{project.pk}/label-head/train").status_code == 201
    proposed = add_scenes(project, labels, 2, seed=7, split=Split.TEST, status=MaskStatus.PROPOSED)
    truth = {m.pk: key for m, (_, _, key) in zip(proposed, synthetic_scene_masks(2, seed=7))}
    image = proposed[0].image
    client.force_authenticate(users["annotator"])
    answer = client.get(f"/api/images/{image.pk}/suggestions").json()
    assert answer["available"] is True
    ours = {int(k): v for k, v in answer["masks"].items()}
    assert set(ours) == {m.pk for m in proposed if m.image_id == image.pk}
    hits = 0
    for mask_id, suggestion in ours.items():
        assert len(suggestion["labels"]) == 3
        probabilities = [s["probability"] for s in suggestion["labels"]]
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0001
        hits += suggestion["labels"][0]["id"] == labels[truth[mask_id]].pk
    assert hits >= len(ours) - 1
    # Renamed or deleted after training: never suggested again.
    renamed = labels[1]
    renamed.name = "not-a-tomato"
    renamed.save()
    labels[2].delete()
    answer = client.get(f"/api/images/{image.pk}/suggestions").json()
    for suggestion in answer["masks"].values():
        names = [s["name"] for s in suggestion["labels"]]
        assert "not-a-tomato" not in names and "tomato" not in names and "leaf" not in names
    # Outsiders see nothing; reviewers are not editors.
    client.force_authenticate(users["outsider"])
    assert client.get(f"/api/images/{image.pk}/suggestions").status_code == 404
    assert client.get(f"/api/projects/{project.pk}/label-head").status_code == 404
    client.force_authenticate(users["annotator"])
    assert client.post(f"/api/projects/{project.pk}/label-head/train").status_code == 403
    summary = client.get(f"/api/projects/{project.pk}/label-head").json()
    assert summary["active"]["metrics"]["train_masks"] > 0


def test_kept_suggestions_are_recorded_per_mask(fruit, users):
    project, labels = fruit
    image = add_scenes(project, labels, 1, seed=8, split=Split.TRAIN, status=MaskStatus.PROPOSED)[0].image
    client = APIClient()
    client.force_authenticate(users["annotator"])
    region = np.zeros((image.height, image.width), bool)
    region[5:20, 5:20] = True
    body = {"segmentation": encode_rle(region), "status": "accepted"}
    kept = client.post(
        f"/api/images/{image.pk}/masks/",
        {**body, "label": labels[1].pk, "suggested_label": labels[1].pk, "suggestion_probability": 0.8},
        format="json",
    )
    changed = client.post(
        f"/api/images/{image.pk}/masks/",
        {**body, "label": labels[2].pk, "suggested_label": labels[1].pk, "suggestion_probability": 0.6},
        format="json",
    )
    assert kept.status_code == changed.status_code == 201, kept.json()
    assert kept.json()["suggested_label"] == labels[1].pk
    summary = client.get(f"/api/projects/{project.pk}/label-head").json()["kept"]
    assert summary["suggested"] == 2 and summary["kept"] == 1 and summary["rate"] == 0.5
    bad = client.post(
        f"/api/images/{image.pk}/masks/",
        {**body, "suggested_label": labels[1].pk, "suggestion_probability": 7},
        format="json",
    )
    assert bad.status_code == 400


def test_enough_new_labelled_masks_retrain_the_head(fruit, settings, django_capture_on_commit_callbacks):
    settings.MASKMILL_LABEL_RETRAIN_EVERY = 20
    project, labels = fruit
    with django_capture_on_commit_callbacks(execute=True):
        add_scenes(project, labels, 4, seed=9, split=Split.TRAIN)  # 16 masks: below the threshold
    assert not LabelHeadVersion.objects.filter(project=project).exists()
    with django_capture_on_commit_callbacks(execute=True):
        add_scenes(project, labels, 4, seed=10, split=Split.TRAIN)  # crosses 20: trained (eager task)
    heads = LabelHeadVersion.objects.filter(project=project)
    assert heads.count() == 1 and heads[0].trigger == "labelled_masks"


def test_commands(fruit, settings, capsys):
    settings.MASKMILL_LABEL_RETRAIN_EVERY = 0
    project, labels = fruit
    with pytest.raises(CommandError, match="at least 2 labels"):
        call_command("train_labels", project.slug)
    add_scenes(project, labels, 8, seed=11, split=Split.TRAIN)
    call_command("train_labels", project.slug)
    assert "active" in capsys.readouterr().out
    with pytest.raises(CommandError, match="not a label of this project"):
        call_command("find", project.slug, "zebra")
    with pytest.raises(CommandError, match="classic segmenter has no automatic generator"):
        call_command("find", project.slug, "tomato")


def test_find_proposes_generator_masks_of_the_label(users, tiny_sam, settings):  # noqa: F811
    """With a real tiny SAM: a two-label head sorts every generator mask into one of its labels, so
    finding each label proposes disjoint masks that together are all the (non-duplicate) candidates;
    a second find proposes nothing again; synonyms resolve; unknown words are refused."""
    from tests.tiny_models import LOW_THRESHOLDS

    settings.MASKMILL_LABEL_RETRAIN_EVERY = 0
    settings.MASKMILL_LABEL_MIN_MASKS_PER_LABEL = 2
    project = create_project(name="Find", creator=users["manager"])
    project.settings["generation"] = {"semi_automatic": LOW_THRESHOLDS}
    project.save()
    left = create_label(project, name="left", synonyms=["port"])
    right = create_label(project, name="right")
    image = add_picture(project, png(synthetic_scene_masks(1, seed=12)[0][0]))
    from annotator.images.embeddings import ensure_embedding

    ensure_embedding(image.pk)
    h, w = image.height, image.width
    for x in range(0, w - 8, 8):  # masks on the left half are "left", on the right half "right"
        region = np.zeros((h, w), bool)
        region[h // 4 : 3 * h // 4, x : x + 8] = True
        create_mask(image, segmentation=encode_rle(region), annotator=None, status="accepted",
                    label=left if x + 4 < w // 2 else right)  # fmt: skip
    head = services.train_head(project)
    assert head.kind == "embedding" and head.status == HeadStatus.ACTIVE
    client = APIClient()
    client.force_authenticate(users["manager"])
    before = set(Mask.objects.filter(image=image).values_list("id", flat=True))
    first = client.post(f"/api/images/{image.pk}/find", {"label": "port"}, format="json")
    assert first.status_code == 200, first.json()
    second = client.post(f"/api/images/{image.pk}/find", {"label": "RIGHT"}, format="json").json()
    first = first.json()
    assert first["label"]["name"] == "left" and second["label"]["name"] == "right"
    assert first["candidates"] == second["candidates"] > 0
    proposed = Mask.objects.filter(image=image).exclude(id__in=before)
    assert proposed.count() == len(first["proposed"]) + len(second["proposed"]) > 0
    assert set(proposed.values_list("status", flat=True)) == {"proposed"}
    for mask in proposed:
        assert mask.label_id == mask.suggested_label_id and 0 <= mask.suggestion_probability <= 1
    again = client.post(f"/api/images/{image.pk}/find", {"label": "left"}, format="json").json()
    assert again["proposed"] == []
    refused = client.post(f"/api/images/{image.pk}/find", {"label": "a red car"}, format="json")
    assert refused.status_code == 400 and "not a label of this project" in str(refused.json())
    assert client.post(f"/api/images/{image.pk}/find", ["x"], format="json").status_code == 400
    job = client.post(f"/api/projects/{project.pk}/find", {"label": "left"}, format="json")
    assert job.status_code == 202 and job.json()["queued"] == 1


def test_dashboard_shows_the_head_and_managers_can_train_it(fruit, users, client, settings):
    settings.MASKMILL_LABEL_RETRAIN_EVERY = 0
    project, labels = fruit
    client.force_login(users["annotator"])
    page = client.get(f"/projects/{project.pk}/dashboard/").content.decode()
    assert 'data-testid="label-head-none"' in page and 'data-testid="train-label-head"' not in page
    assert client.post(f"/projects/{project.pk}/label-head/train").status_code == 403
    add_scenes(project, labels, 8, seed=13, split=Split.TRAIN)
    add_scenes(project, labels, 3, seed=14, split=Split.VAL)
    client.force_login(users["manager"])
    answer = client.post(f"/projects/{project.pk}/label-head/train", follow=True)
    page = answer.content.decode()
    assert "trained: active" in page
    assert 'data-testid="label-head-active"' in page and 'data-testid="confusion"' in page
    assert "tomato" in page and "val top-1" in page


def test_predict_answers_carry_suggestions_for_every_mask(fruit, users, settings):
    """The classic segmenter's click answer: one suggestion list per mask, the clicked object's
    label on top; before any head exists the answer says why there are none."""
    settings.MASKMILL_LABEL_RETRAIN_EVERY = 0
    project, labels = fruit
    client = APIClient()
    client.force_authenticate(users["annotator"])
    scenes = synthetic_scene_masks(1, seed=15)
    target = max(scenes, key=lambda s: s[1].sum())  # the largest visible object
    image = add_picture(project, png(target[0]), name="click.png")
    ys, xs = np.nonzero(target[1])
    centre = [float(np.median(xs)), float(np.median(ys))]
    inside = min(range(len(xs)), key=lambda i: (xs[i] - centre[0]) ** 2 + (ys[i] - centre[1]) ** 2)
    click = {"points": [[float(xs[inside]), float(ys[inside])]], "labels": [1]}
    answer = client.post(f"/api/images/{image.pk}/predict", click, format="json").json()
    assert "no label suggestions yet" in answer["suggestions_unavailable"] and "suggestions" not in answer
    add_scenes(project, labels, 10, seed=16, split=Split.TRAIN)
    services.train_head(project)
    services.forget_heads()  # the active-head lookup is cached for a few seconds per process
    answer = client.post(f"/api/images/{image.pk}/predict", click, format="json").json()
    assert len(answer["suggestions"]) == len(answer["masks"]) == 3
    assert "suggest" in answer["timing_ms"]
    best = int(np.argmax([m["score"] for m in answer["masks"]]))
    assert answer["suggestions"][best]["labels"][0]["id"] == labels[target[2]].pk


def test_sam_predict_answers_carry_suggestions_from_the_embedding(users, tiny_sam, settings):  # noqa: F811
    settings.MASKMILL_LABEL_RETRAIN_EVERY = 0
    settings.MASKMILL_LABEL_MIN_MASKS_PER_LABEL = 2
    project = create_project(name="Sam", creator=users["manager"])
    labels = {key: create_label(project, name=name) for key, name in NAMES.items()}
    add_scenes(project, labels, 3, seed=17, split=Split.TRAIN)
    from annotator.images.embeddings import ensure_embedding
    from annotator.images.models import Image

    for image in Image.objects.filter(project=project):
        ensure_embedding(image.pk)
    head = services.train_head(project)
    assert head.kind == "embedding" and head.model_version is not None
    services.forget_heads()
    client = APIClient()
    client.force_authenticate(users["manager"])
    image = Image.objects.filter(project=project).first()
    body = {"points": [[40.0, 40.0]], "labels": [1]}
    answer = client.post(f"/api/images/{image.pk}/predict", body, format="json").json()
    while answer.get("state") == "preparing":
        answer = client.post(f"/api/images/{image.pk}/predict", body, format="json").json()
    assert len(answer["suggestions"]) == len(answer["masks"])
    for suggestion in answer["suggestions"]:
        assert suggestion["labels"] and all(s["name"] in NAMES.values() for s in suggestion["labels"])
