"""The ``embed`` task: idempotent, a no-op without a model, and with a model the encoder's output
stored as fp16 .npy plus an Embedding row (checked with a tiny random ``custom`` SAM)."""

from __future__ import annotations

import pytest

from annotator.images.models import Embedding
from annotator.images.tasks import embed
from annotator.training import services as training
from tests.conftest import add_image
from tests.tiny_models import TINY_CONFIG, save_tiny_checkpoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def tiny_model(settings, tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.pt")
    settings.MASKMILL_MODEL_TYPE = "custom"
    settings.MASKMILL_CHECKPOINT = str(checkpoint)
    settings.MASKMILL_MODEL_CONFIG = TINY_CONFIG
    training.forget_loaded_models()
    yield
    training.forget_loaded_models()


def test_the_task_is_late_acked_retried_and_time_limited():
    assert embed.acks_late and embed.reject_on_worker_lost
    assert embed.time_limit and embed.soft_time_limit < embed.time_limit
    assert embed.max_retries == 5 and embed.autoretry_for
    assert embed.app.amqp.router.route({}, embed.name)["queue"].name == "embed"


def test_without_a_model_nothing_is_stored(project):
    image = add_image(project)
    assert embed.delay(image.pk).get() is None
    assert not Embedding.objects.exists()


def test_a_vanished_image_is_not_an_error(db):
    assert embed.delay(987654).get() is None


def test_with_a_model_the_embedding_is_stored_once(project, tiny_model):
    from engine.embeddings import load_embedding

    image = add_image(project, width=64, height=48)
    first = embed.delay(image.pk).get()
    stored = Embedding.objects.get(pk=first)
    assert stored.model_version.family == "custom" and stored.dtype == "float16"
    assert stored.input_size == [96, 128]  # longest side resized to the encoder's 128
    with stored.file.open("rb") as fileobj:
        tensor = load_embedding(fileobj)
    assert tuple(tensor.shape) == (1, 32, 8, 8) and list(tensor.shape) == stored.shape
    assert embed.delay(image.pk).get() == first  # idempotent: found, not recomputed
    assert Embedding.objects.count() == 1


def test_the_model_is_loaded_once_per_process(project, tiny_model):
    version = training.configured_model_version()
    assert training.predictor_for(version) is training.predictor_for(version)


def test_the_encoder_precision_setting_applies_to_loaded_models(project, tiny_model, settings):
    settings.MASKMILL_ENCODER_PRECISION = "int8"
    training.forget_loaded_models()
    try:
        model = training.predictor_for(training.configured_model_version()).model
        assert model.precision == "int8"
        quantized = [m for m in model.image_encoder.modules() if "quantized" in type(m).__module__]
        assert quantized, "the encoder's Linear layers should be dynamically quantized"
        assert all("quantized" not in type(m).__module__ for m in model.mask_decoder.modules())
        image = add_image(project, width=64, height=48)
        assert Embedding.objects.filter(pk=embed.delay(image.pk).get()).exists()
    finally:
        training.forget_loaded_models()


def test_a_missing_checkpoint_is_named(project, settings, tmp_path):
    settings.MASKMILL_MODEL_TYPE = "custom"
    settings.MASKMILL_CHECKPOINT = str(tmp_path / "nowhere.pt")
    training.forget_loaded_models()
    with pytest.raises(FileNotFoundError, match=r"nowhere\.pt"):
        training.checkpoint_path(training.configured_model_version())
