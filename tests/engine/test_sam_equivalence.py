"""Our SAM and Predictor against the official segment_anything, on the same random weights."""

from __future__ import annotations

import pytest
import torch

from engine.predictor import Predictor
from engine.sam import build_sam
from tests.engine.sam_cases import (
    LOGIT_ATOL,
    assert_same_outputs,
    copy_official_weights,
    one_torch_thread,
    prompt_cases,
    random_image,
    run_prompt_matrix,
)
from tests.reference import reference
from tests.reference_models import SMALL_CONFIG, VIT_B_CONFIG, official_sam

pytestmark = pytest.mark.reference
_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)

IMAGE_SHAPES = {
    "landscape": (300, 460),
    "portrait": (410, 270),
    "square": (333, 333),
    "tiny": (37, 50),
    "large": (3000, 2000),
}


@pytest.fixture(scope="module")
def small_pair():
    official = official_sam(SMALL_CONFIG, seed=1)
    ours = copy_official_weights(build_sam("custom", config=SMALL_CONFIG), official)
    return ours, official


@pytest.mark.parametrize("shape_name", list(IMAGE_SHAPES))
def test_small_model_matches_official_for_every_prompt(small_pair, shape_name):
    ours_model, official_model = small_pair
    h, w = IMAGE_SHAPES[shape_name]
    image = random_image(h, w, seed=h + w)
    ours = Predictor(ours_model)
    official = reference("segment_anything").SamPredictor(official_model)
    ours.set_image(image)
    official.set_image(image)

    assert ours.input_size == official.input_size
    assert tuple(ours.original_size) == tuple(official.original_size)
    embedding_err = (ours.get_image_embedding() - official.get_image_embedding()).abs().max().item()
    assert embedding_err <= LOGIT_ATOL, f"embeddings differ by {embedding_err:.2e}"
    for label, mine, theirs in run_prompt_matrix(ours, official, h, w):
        assert_same_outputs(f"{shape_name} {label}", mine, theirs)


def test_small_model_bgr_input_matches_official(small_pair):
    ours_model, official_model = small_pair
    image = random_image(120, 90, seed=5)
    ours, official = Predictor(ours_model), reference("segment_anything").SamPredictor(official_model)
    ours.set_image(image[..., ::-1].copy(), image_format="BGR")
    official.set_image(image[..., ::-1].copy(), image_format="BGR")
    for label, mine, theirs in run_prompt_matrix(ours, official, 120, 90)[:2]:
        assert_same_outputs(label, mine, theirs)


def test_small_model_batched_predict_torch_matches_official(small_pair):
    """The batched decoder path (what the automatic generator uses) with 16 prompts at once."""
    ours_model, official_model = small_pair
    image = random_image(200, 260, seed=7)
    ours, official = Predictor(ours_model), reference("segment_anything").SamPredictor(official_model)
    ours.set_image(image)
    official.set_image(image)
    gen = torch.Generator().manual_seed(0)
    coords = torch.rand((16, 1, 2), generator=gen) * torch.tensor([255.0, 196.0])
    labels = torch.ones((16, 1), dtype=torch.int)
    mine = ours.predict_torch(coords, labels, multimask_output=True)
    theirs = official.predict_torch(coords, labels, multimask_output=True)
    assert (mine[2] - theirs[2]).abs().max().item() <= LOGIT_ATOL
    assert (mine[1] - theirs[1]).abs().max().item() <= 1e-4
    assert (mine[0] == theirs[0]).float().mean().item() >= 0.999


def test_sam_forward_matches_official(small_pair):
    ours_model, official_model = small_pair
    image = torch.rand(3, 256, 192) * 255
    record = {
        "image": image,
        "original_size": (300, 225),
        "point_coords": torch.tensor([[[50.0, 60.0], [120.0, 30.0]]]),
        "point_labels": torch.tensor([[1, 0]]),
        "boxes": torch.tensor([[10.0, 20.0, 150.0, 200.0]]),
    }
    mine = ours_model([record], multimask_output=True)[0]
    theirs = official_model([record], multimask_output=True)[0]
    assert (mine["low_res_logits"] - theirs["low_res_logits"]).abs().max().item() <= LOGIT_ATOL
    assert (mine["iou_predictions"] - theirs["iou_predictions"]).abs().max().item() <= 1e-4
    assert (mine["masks"] == theirs["masks"]).float().mean().item() >= 0.999


@pytest.mark.slow
def test_vit_b_matches_official():
    """vit_b: the encoder once on one image, then the whole prompt matrix from that embedding."""
    official_model = official_sam(VIT_B_CONFIG, seed=2)
    ours_model = copy_official_weights(build_sam("vit_b"), official_model)
    h, w = 480, 640
    image = random_image(h, w, seed=3)
    ours = Predictor(ours_model)
    official = reference("segment_anything").SamPredictor(official_model)
    official.set_image(image)
    ours.set_image(image)
    theirs_embedding = official.get_image_embedding()
    our_embedding = ours.get_image_embedding()
    embedding_err = (our_embedding - theirs_embedding).abs().max().item()
    assert embedding_err <= LOGIT_ATOL, f"vit_b embeddings differ by {embedding_err:.2e}"

    ours.set_embedding(theirs_embedding, (h, w), official.input_size)
    for label, mine, theirs in run_prompt_matrix(ours, official, h, w):
        assert_same_outputs(f"vit_b {label}", mine, theirs)
    # From our own embedding too, for the first prompts: the whole pipeline agrees.
    ours.set_embedding(our_embedding, (h, w))
    for name, kwargs in prompt_cases(h, w)[:2]:
        assert_same_outputs(
            f"vit_b own embedding, {name}", ours.predict(**kwargs), official.predict(**kwargs)
        )
