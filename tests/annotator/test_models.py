"""The schema's guarantees hold in the database itself, not only in the services."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from annotator.images.models import Embedding, Image
from annotator.masks.models import Mask
from annotator.masks.services import create_mask
from annotator.projects.models import Membership
from annotator.stages.models import GenerationItem, GenerationRun
from annotator.training.models import ModelVersion
from annotator.training.services import configured_model_version
from tests.conftest import add_image

pytestmark = pytest.mark.django_db

RLE = {"size": [48, 64], "counts": [100, 20, 64 * 48 - 120]}


def raw_mask(image, project_id, label_id=None) -> Mask:
    return Mask(
        image=image, project_id=project_id, label_id=label_id, segmentation=RLE, bbox=[0, 0, 1, 1], area=20
    )


def test_sha256_is_unique_per_project(project):
    image = add_image(project)
    with pytest.raises(IntegrityError), transaction.atomic():
        Image.objects.create(project=project, sha256=image.sha256, width=1, height=1, file="x.png")


def test_choices_are_enforced_by_the_database(project, users):
    image = add_image(project)
    with pytest.raises(IntegrityError), transaction.atomic():
        Image.objects.filter(pk=image.pk).update(status="lost")
    with pytest.raises(IntegrityError), transaction.atomic():
        Membership.objects.create(project=project, user=users["outsider"], role="owner")
    raw_mask(image, project.pk).save()
    with pytest.raises(IntegrityError), transaction.atomic():
        Mask.objects.filter(project=project).update(source="magic")


def test_a_mask_label_from_another_project_is_refused_by_the_database(project, other_project):
    image = add_image(project)
    foreign_label = other_project.labels.first()
    with pytest.raises(IntegrityError), transaction.atomic():
        raw_mask(image, project.pk, foreign_label.pk).save()
        connection.check_constraints()  # PostgreSQL defers foreign keys to commit
    with pytest.raises(IntegrityError), transaction.atomic():
        raw_mask(image, other_project.pk).save()  # image of one project, mask of another
        connection.check_constraints()
    raw_mask(image, project.pk, project.labels.first().pk).save()  # the right project's label is fine


def test_model_clean_and_service_refuse_a_foreign_label(project, other_project):
    image = add_image(project)
    mask = raw_mask(image, project.pk, other_project.labels.first().pk)
    with pytest.raises(ValidationError, match="another project"):
        mask.clean()
    with pytest.raises(ValidationError, match="another project"):
        create_mask(image, segmentation=RLE, annotator=None, label=other_project.labels.first())


def test_one_embedding_per_image_and_model_and_one_item_per_image_and_run(project):
    image = add_image(project)
    version = ModelVersion.objects.create(family="custom", checkpoint="tiny.pt", config={"image_size": 256})
    Embedding.objects.create(image=image, model_version=version, file="e.npy")
    with pytest.raises(IntegrityError), transaction.atomic():
        Embedding.objects.create(image=image, model_version=version, file="e2.npy")
    run = GenerationRun.objects.create(project=project, mode="auto")
    GenerationItem.objects.create(run=run, image=image)
    with pytest.raises(IntegrityError), transaction.atomic():
        GenerationItem.objects.create(run=run, image=image)


def test_configured_checkpoint_gets_one_model_version_row(settings):
    settings.MASKMILL_MODEL_TYPE = "custom"
    settings.MASKMILL_CHECKPOINT = "tiny.pt"
    settings.MASKMILL_MODEL_CONFIG = {"image_size": 256}
    first = configured_model_version()
    assert first is not None and first.family == "custom" and first.config == {"image_size": 256}
    assert configured_model_version().pk == first.pk
    settings.MASKMILL_MODEL_CONFIG = {"image_size": 512}
    assert configured_model_version().pk != first.pk  # other sizes → another model
    settings.MASKMILL_MODEL_TYPE = ""
    assert configured_model_version() is None


def test_project_defaults_carry_the_stage_parameters(project):
    assert project.setting("seconds_per_mask_hint") == 30
    assert project.generation_params("semi_automatic")["pred_iou_thresh"] == 0.92
    project.settings["generation"]["fully_automatic"] = {"points_per_side": 16}
    assert project.generation_params("fully_automatic") == {
        **project.generation_params("fully_automatic"), "points_per_side": 16, "pred_iou_thresh": 0.88
    }  # fmt: skip


def test_queue_and_mask_queries_use_their_indexes(project):
    """The stages' hot queries are served by an index (SQLite's planner says which)."""
    if connection.vendor != "sqlite":
        pytest.skip("plan text checked on SQLite")
    queries = {
        "image_queue": Image.objects.filter(project=project, status__in=["new", "needs_rework"]).order_by(
            "id"
        ),
        "mask_image_status": Mask.objects.filter(image_id=1, status="accepted"),
        "mask_project_accepted": Mask.objects.filter(
            project=project, status="accepted", accepted_at__gte=timezone.now()
        ),
    }
    for index, queryset in queries.items():
        plan = queryset.explain()
        assert index in plan, plan
