"""The stages with the real engine: ``engine.automatic.MaskGenerator`` on a tiny random ``custom``
SAM (thresholds lowered so masks survive), the model kept per process and replaced when the
project's model version changes, and the stored embedding reused instead of running the encoder."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotator.images.services import ingest_files
from annotator.masks.models import Mask
from annotator.stages import generation, services
from annotator.training import services as training_services
from annotator.training.models import JobStatus, ModelVersion
from tests.integration.pipeline_support import shapes_png
from tests.tiny_models import LOW_THRESHOLDS, TINY_CONFIG

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_models(settings):
    settings.MASKMILL_MASK_GENERATOR = ""
    generation.forget_generators()
    training_services.forget_loaded_models()
    yield
    generation.forget_generators()
    training_services.forget_loaded_models()


@pytest.fixture
def tiny_project(project):
    import torch

    torch.manual_seed(0)
    project.active_model_version = ModelVersion.objects.create(
        family="custom", config=TINY_CONFIG, name="tiny"
    )
    project.settings["generation"] = {"fully_automatic": LOW_THRESHOLDS}
    project.save()
    uploads = [SimpleUploadedFile(f"s{seed}.png", shapes_png(seed)) for seed in range(2)]
    ingest_files(project, uploads, None)
    return project


def encoder_calls(model) -> list[int]:
    calls: list[int] = []
    model.image_encoder.register_forward_hook(lambda *args: calls.append(1))
    return calls


def test_real_generator_stores_contract_masks(tiny_project, django_capture_on_commit_callbacks):
    from engine.masks import decode_rle

    with django_capture_on_commit_callbacks(execute=True):
        run = services.start_run(tiny_project, "auto")
    run.refresh_from_db()
    assert (run.status, run.done, run.failed) == (JobStatus.DONE, 2, 0), list(run.items.values("error"))
    masks = list(Mask.objects.filter(project=tiny_project))
    assert masks, "lowered thresholds should let some masks of the random model survive"
    assert sum(run.items.values_list("mask_count", flat=True)) == len(masks)
    for mask in masks[:5]:
        decoded = decode_rle(mask.segmentation)
        assert decoded.shape == (72, 96) and int(decoded.sum()) == mask.area
        assert 0 <= mask.point_coords[0][0] <= 96 and mask.crop_box == [0.0, 0.0, 96.0, 72.0]
        assert mask.model_version_id == tiny_project.active_model_version_id


def test_model_is_loaded_once_and_replaced_when_the_active_version_changes(tiny_project):
    first_version = tiny_project.active_model_version
    image = tiny_project.images.first()
    generation.run_generator(image, first_version, LOW_THRESHOLDS)
    model = training_services.predictor_for(first_version).model
    generation.run_generator(image, first_version, LOW_THRESHOLDS)
    assert training_services.predictor_for(first_version).model is model  # kept between tasks

    newer = ModelVersion.objects.create(
        family="custom",
        config={**TINY_CONFIG, "encoder_depth": 1, "encoder_global_attn_indexes": [0]},
        name="v2",
    )
    tiny_project.active_model_version = newer
    tiny_project.save()
    run = services.start_run(tiny_project, "auto", enqueue=False)
    assert run.model_version == newer
    assert services.process_item(run.items.first().pk, "w") == "done"
    assert set(training_services._predictors) == {newer.pk}  # the old weights were let go
    assert training_services.predictor_for(newer).model is not model


def test_the_stored_embedding_is_reused_instead_of_running_the_encoder(tiny_project):
    from annotator.images.embeddings import ensure_embedding

    version = tiny_project.active_model_version
    image = tiny_project.images.first()
    assert ensure_embedding(image.pk) is not None  # what the embed task stores
    calls = encoder_calls(training_services.predictor_for(version).model)
    reused = generation.run_generator(image, version, LOW_THRESHOLDS)
    assert reused.reused_embedding and calls == []
    fresh_image = tiny_project.images.last()
    computed = generation.run_generator(fresh_image, version, LOW_THRESHOLDS)
    assert not computed.reused_embedding and calls == [1]
