"""The prepared-image decoder (engine.sam.prepared) against segment_anything's mask decoder."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from engine.predictor import Predictor
from engine.sam import build_sam, prepared
from tests.engine.sam_cases import IOU_ATOL, LOGIT_ATOL, copy_official_weights, one_torch_thread
from tests.reference_models import SMALL_CONFIG, VIT_B_CONFIG, official_sam

pytestmark = pytest.mark.reference
_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


def _pair(config: dict, seed: int):
    official = official_sam(config, seed=seed)
    return copy_official_weights(build_sam("custom", config=config), official), official


def _prompts(config: dict, batch: int, seed: int) -> dict[str, dict]:
    gen = torch.Generator().manual_seed(seed)
    size, grid = config["image_size"], config["image_size"] // config["patch_size"]
    points = torch.rand((batch, 3, 2), generator=gen) * size
    labels = torch.tensor([[1, 0, 1]] * batch, dtype=torch.int)
    corner = torch.rand((batch, 2), generator=gen) * size / 2
    boxes = torch.cat([corner, corner + size / 3], dim=1)
    masks = torch.randn((batch, 1, 4 * grid, 4 * grid), generator=gen) * 8
    return {
        "points": {"points": (points, labels), "boxes": None, "masks": None},
        "box": {"points": None, "boxes": boxes, "masks": None},
        "points + box": {"points": (points[:, :2], labels[:, :2]), "boxes": boxes, "masks": None},
        "points + mask": {"points": (points, labels), "boxes": None, "masks": masks},
        "box + mask": {"points": None, "boxes": boxes, "masks": masks},
        "mask only": {"points": None, "boxes": None, "masks": masks},
    }


def _official(official, features, prompt, multimask):
    sparse, dense = official.prompt_encoder(**prompt)
    return official.mask_decoder(features, official.prompt_encoder.get_dense_pe(), sparse, dense, multimask)


def _ours(model, ready, prompt, multimask):
    sparse, _ = model.prompt_encoder(points=prompt["points"], boxes=prompt["boxes"], masks=None)
    return prepared.decode(model, ready, sparse, prompt["masks"], multimask)


@pytest.mark.parametrize("batch", [1, 4])
def test_matches_official_decoder_for_every_prompt_kind(batch):
    model, official = _pair(SMALL_CONFIG, seed=3)
    assert prepared.supports(model)
    grid = SMALL_CONFIG["image_size"] // SMALL_CONFIG["patch_size"]
    channels = SMALL_CONFIG["prompt_embed_dim"]
    features = torch.randn((1, channels, grid, grid), generator=torch.Generator().manual_seed(1))
    ready = prepared.prepare_image(model, features)
    with torch.inference_mode():
        for name, prompt in _prompts(SMALL_CONFIG, batch, seed=batch).items():
            for multimask in (True, False):
                logits, iou = _ours(model, ready, prompt, multimask)
                ref_logits, ref_iou = _official(official, features, prompt, multimask)
                label = f"{name}, multimask={multimask}"
                assert logits.shape == ref_logits.shape and iou.shape == ref_iou.shape, label
                assert (logits - ref_logits).abs().max().item() <= LOGIT_ATOL, label
                assert (iou - ref_iou).abs().max().item() <= IOU_ATOL, label


@pytest.mark.slow
def test_vit_b_matches_official_decoder():
    model, official = _pair(VIT_B_CONFIG, seed=4)
    features = torch.randn((1, 256, 64, 64), generator=torch.Generator().manual_seed(2))
    ready = prepared.prepare_image(model, features)
    with torch.inference_mode():
        for name, prompt in _prompts(VIT_B_CONFIG, 1, seed=5).items():
            logits, iou = _ours(model, ready, prompt, True)
            ref_logits, ref_iou = _official(official, features, prompt, True)
            assert (logits - ref_logits).abs().max().item() <= LOGIT_ATOL, name
            assert (iou - ref_iou).abs().max().item() <= IOU_ATOL, name


def test_changed_weights_are_picked_up():
    """The per-model constants (folded mask weights, positional encoding) follow the weights."""
    model, _ = _pair(SMALL_CONFIG, seed=6)
    features = torch.randn((1, 64, 16, 16))
    prompt = _prompts(SMALL_CONFIG, 1, seed=7)["points + mask"]
    with torch.inference_mode():
        _ours(model, prepared.prepare_image(model, features), prompt, True)  # caches the constants
    retrained = official_sam(SMALL_CONFIG, seed=8)
    copy_official_weights(model, retrained)
    with torch.inference_mode():
        logits, _ = _ours(model, prepared.prepare_image(model, features), prompt, True)
        ref_logits, _ = _official(retrained, features, prompt, True)
    assert (logits - ref_logits).abs().max().item() <= LOGIT_ATOL


def test_an_image_prepared_before_a_weight_change_is_refused():
    """Its projections were made with the old weights: decoding it would mix two models."""
    model, _ = _pair(SMALL_CONFIG, seed=12)
    ready = prepared.prepare_image(model, torch.randn((1, 64, 16, 16)))
    copy_official_weights(model, official_sam(SMALL_CONFIG, seed=13))
    prompt = _prompts(SMALL_CONFIG, 1, seed=14)["points"]
    with torch.inference_mode(), pytest.raises(ValueError, match="prepare it again"):
        _ours(model, ready, prompt, True)


def test_other_decoders_fall_back_to_their_modules():
    """A model without engine.sam's decoder (here segment_anything's own) is decoded by its modules."""
    _, official = _pair(SMALL_CONFIG, seed=9)
    assert not prepared.supports(official)
    predictor = Predictor(official)
    predictor.set_embedding(torch.randn((1, 64, 16, 16)), (200, 300))
    masks, scores, logits = predictor.predict(point_coords=[[50.0, 60.0]], point_labels=[1])
    assert masks.shape == (3, 200, 300) and scores.shape == (3,) and logits.shape == (3, 64, 64)
    assert predictor._prepared is None


def test_prepared_image_is_built_once_per_image():
    model, _ = _pair(SMALL_CONFIG, seed=10)
    predictor = Predictor(model)
    predictor.set_embedding(torch.randn((1, 64, 16, 16)), (200, 300))
    predictor.predict(point_coords=[[50.0, 60.0]], point_labels=[1])
    first = predictor._prepared
    predictor.predict(point_coords=[[50.0, 60.0], [10.0, 20.0]], point_labels=[1, 0])
    assert first is not None and predictor._prepared is first
    predictor.set_embedding(torch.randn((1, 64, 16, 16)), (200, 300))
    assert predictor._prepared is None


def test_prepare_rejects_a_batch_of_embeddings():
    model, _ = _pair(SMALL_CONFIG, seed=11)
    with pytest.raises(ValueError, match="one"):
        prepared.prepare_image(model, torch.randn((2, 64, 16, 16)))


@pytest.mark.parametrize("setting, expected", [("", "True"), ("0", "False")])
def test_tune_malloc_follows_the_setting(setting, expected):
    code = "from engine.runtime import tune_malloc; print(tune_malloc(), tune_malloc())"
    env = {"MASKMILL_TUNE_MALLOC": setting, "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd="."
    )
    if sys.platform.startswith("linux") and expected == "True":
        assert done.stdout.split() == ["True", "True"]
    else:
        assert done.stdout.split() == ["False", "False"]
