"""MaskGenerator against segment_anything's SamAutomaticMaskGenerator with the same weights.

Random weights give near-zero, structureless logits, so every mask would be the whole image and
the tests could not tell much apart. ``structured_`` reshapes the decoder's last layers (same
change for both models, so still "the same weights"): sharper logits, a constant negative offset
so masks are the strong parts of the field, and a higher IoU head so that some masks pass the
default thresholds. The scene is flat-coloured shapes, which gives piecewise-smooth features.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest
import torch

from engine.automatic import MaskGenerator
from engine.masks import decode_rle
from tests.reference import reference
from tests.reference_models import SMALL_CONFIG, VIT_B_CONFIG, official_sam

pytestmark = pytest.mark.reference


def scene(height: int = 200, width: int = 300, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), (40, 90, 160), np.uint8)
    for _ in range(8):
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.circle(image, center, int(rng.integers(10, 50)), color, -1)
        else:
            x, y = int(rng.integers(0, width - 20)), int(rng.integers(0, height - 20))
            size = (int(rng.integers(15, 90)), int(rng.integers(15, 70)))
            cv2.rectangle(image, (x, y), (x + size[0], y + size[1]), color, -1)
    return image


@torch.no_grad()
def structured_(model: torch.nn.Module, sharpness: float, offset: float, iou_shift: float) -> torch.nn.Module:
    decoder = model.mask_decoder
    last_upscale = decoder.output_upscaling[3]
    last_upscale.weight[:, 0] = 0.0  # channel 0 becomes the constant GELU(3) ≈ 3
    last_upscale.bias[0] = 3.0
    for mlp in decoder.output_hypernetworks_mlps:
        mlp.layers[-1].weight.mul_(sharpness)
        mlp.layers[-1].bias.mul_(sharpness)
        mlp.layers[-1].weight[0] = 0.0
        mlp.layers[-1].bias[0] = -offset * sharpness / 3.0
    decoder.iou_prediction_head.layers[-1].bias.add_(iou_shift)
    return model


def ours_from(official: torch.nn.Module, config: dict) -> torch.nn.Module:
    """Maskmill's model with the official weights."""
    from engine.sam import build_sam

    model = build_sam("custom", config=config)
    model.load_state_dict(official.state_dict())
    return model.eval()


def as_mask(segmentation) -> np.ndarray:
    if isinstance(segmentation, np.ndarray):
        return segmentation
    if isinstance(segmentation["counts"], list):
        from pycocotools import mask as mask_utils

        h, w = segmentation["size"]
        return mask_utils.decode(mask_utils.frPyObjects(segmentation, h, w)).astype(bool)
    return decode_rle(segmentation)


def record_mismatch(want: dict, got: dict) -> str | None:
    """What differs between two records beyond float rounding, or None."""
    a, b = as_mask(want["segmentation"]), as_mask(got["segmentation"])
    if a.shape != b.shape:
        return f"mask shapes {a.shape} vs {b.shape}"
    union = (a | b).sum()
    if union and (a & b).sum() / union < 0.99:
        return f"mask IoU {(a & b).sum() / union:.4f}"
    if (
        np.isnan(want["stability_score"]) != np.isnan(got["stability_score"])
        or abs(got["stability_score"] - want["stability_score"]) > 1e-4
    ):
        return f"stability {got['stability_score']} vs {want['stability_score']}"
    if got["bbox"] != pytest.approx(want["bbox"], abs=2):
        return f"bbox {got['bbox']} vs {want['bbox']}"
    if got["area"] != pytest.approx(want["area"], rel=0.01, abs=2):
        return f"area {got['area']} vs {want['area']}"
    return None


def assert_same_records(
    expected: list[dict], actual: list[dict], within_rounding: Callable[[dict, dict], bool] | None = None
) -> None:
    """Records equal up to float rounding. ``within_rounding(want, got)``, where given, may
    accept a mask (with its box and area) or stability score that differs, by showing that the
    difference is within the model's own rounding."""
    assert len(actual) == len(expected)
    for want, got in zip(expected, actual):
        assert set(got) == set(want)
        assert type(got["segmentation"]) is type(want["segmentation"])
        mismatch = record_mismatch(want, got)
        if mismatch is not None:
            assert within_rounding is not None and within_rounding(want, got), mismatch
        assert got["predicted_iou"] == pytest.approx(want["predicted_iou"], abs=1e-4)
        assert got["crop_box"] == want["crop_box"]
        np.testing.assert_allclose(got["point_coords"], want["point_coords"])


@pytest.fixture(scope="module")
def small_models():
    official = structured_(official_sam(SMALL_CONFIG, seed=0), sharpness=300, offset=0.4, iou_shift=0.6)
    return official, ours_from(official, SMALL_CONFIG)


CASES = [
    pytest.param(dict(points_per_side=8), 1, id="defaults"),
    pytest.param(dict(points_per_side=6, pred_iou_thresh=0, stability_score_thresh=0), 10, id="thresholds-0"),
    pytest.param(
        dict(points_per_side=4, pred_iou_thresh=0, stability_score_thresh=0, crop_n_layers=1), 10, id="crops"
    ),
    pytest.param(
        dict(
            points_per_side=6,
            pred_iou_thresh=0.5,
            stability_score_thresh=0.5,
            min_mask_region_area=100,
            output_mode="coco_rle",
        ),
        3,
        id="small-regions-coco",
    ),
    pytest.param(
        dict(
            points_per_side=4,
            pred_iou_thresh=0.5,
            stability_score_thresh=0.5,
            crop_n_layers=1,
            crop_n_points_downscale_factor=2,
            min_mask_region_area=100,
            output_mode="uncompressed_rle",
        ),
        2,
        id="crops-small-regions-uncompressed",
    ),
]


@pytest.mark.parametrize(("params", "at_least"), CASES)
def test_same_records_as_official(small_models, params, at_least):
    official, ours = small_models
    sa = reference("segment_anything")
    image = scene()
    expected = sa.SamAutomaticMaskGenerator(official, **params).generate(image)
    actual = MaskGenerator(ours, **params).generate(image)
    assert len(expected) >= at_least, "the test model gives too few masks to compare anything"
    assert_same_records(expected, actual)


def test_generate_batch_equals_generate(small_models):
    _, ours = small_models
    generator = MaskGenerator(ours, points_per_side=4, pred_iou_thresh=0, stability_score_thresh=0)
    images = [scene(seed=1), scene(120, 90, seed=2)]
    batched = list(generator.generate_batch(images))
    assert len(batched) == 2
    for image, records in zip(images, batched):
        assert_same_records(generator.generate(image), records)


def test_bad_arguments_say_what_is_wrong(small_models):
    _, ours = small_models
    with pytest.raises(ValueError, match="exactly one"):
        MaskGenerator(ours, points_per_side=None)
    with pytest.raises(ValueError, match="output_mode"):
        MaskGenerator(ours, output_mode="polygons")
    with pytest.raises(ValueError, match="HxWx3 RGB uint8"):
        MaskGenerator(ours, points_per_side=2).generate(np.zeros((10, 10), np.uint8))


def test_a_given_embedding_replaces_the_encoder(small_models):
    _, ours = small_models
    generator = MaskGenerator(ours, points_per_side=4, pred_iou_thresh=0, stability_score_thresh=0)
    image = scene(seed=3)
    expected = generator.generate(image)
    tensor = torch.as_tensor(generator.transform.apply_image(image)).permute(2, 0, 1)[None].contiguous()
    with torch.no_grad():
        embedding = ours.image_encoder(ours.preprocess(tensor))
    calls = []
    hook = ours.image_encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        actual = generator.generate(image, embedding=embedding)
    finally:
        hook.remove()
    assert calls == [] and generator.timings["encoder"] == 0.0
    assert len(expected) >= 5
    assert_same_records(expected, actual)
    with pytest.raises(ValueError, match="embedding must be 1 x 64 x"):
        generator.generate(image, embedding=embedding[:, :32])
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        generator.generate(image, embedding=embedding.numpy())


def test_our_model_takes_the_shared_image_decode_path(small_models):
    """engine.sam's transformer broadcasts a batch-1 image side against the prompts, so the
    generator does not fall back to copying the embedding per prompt."""
    from engine.automatic import decoding

    _, ours = small_models
    MaskGenerator(ours, points_per_side=2).generate(scene())
    assert decoding._FAST_OK.get(ours) is True


@pytest.mark.parametrize("filtered", [False, True], ids=["all-rows", "some-chunks-empty"])
def test_chunked_prepared_decoding_equals_the_plain_decoder(small_models, filtered):
    """Points decoded a few at a time on the prepared image side give the plain decoder's logits
    and IoUs for every prompt, and upscale exactly the prompts some mask of which passes."""
    from engine.automatic import decoding

    official, ours = small_models
    torch.manual_seed(3)
    features = torch.randn(1, SMALL_CONFIG["prompt_embed_dim"], *ours.prompt_encoder.image_embedding_size)
    size = ours.image_encoder.img_size
    coords = torch.rand(11, 2) * size
    labels = torch.ones((11, 1), dtype=torch.int)
    with torch.no_grad():
        sparse, dense = official.prompt_encoder(points=(coords[:, None], labels), boxes=None, masks=None)
        plain_masks, plain_iou = official.mask_decoder(
            image_embeddings=features,
            image_pe=official.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
        )
        # A threshold halfway between two prompts' best IoUs (no ties): about half are not upscaled.
        best = plain_iou.max(dim=1).values.sort().values
        thresh = float(best[5] + best[6]) / 2 if filtered else 0.0
        expected_rows = torch.nonzero((plain_iou > thresh).any(dim=1)).flatten()
        for chunk in (1, 3, 64):
            masks, iou, rows = decoding._decode_shared(
                ours,
                features,
                ours.prompt_encoder.get_dense_pe(),
                *ours.prompt_encoder(points=(coords[:, None], labels), boxes=None, masks=None),
                pred_iou_thresh=thresh,
                chunk=chunk,
            )
            torch.testing.assert_close(iou, plain_iou, atol=1e-4, rtol=1e-4)
            assert torch.equal(rows, expected_rows)
            torch.testing.assert_close(masks, plain_masks[expected_rows], atol=2e-3, rtol=1e-4)
    if filtered:
        assert 0 < len(expected_rows) < 11, "the case must leave some prompts out"


class CachedEncoder(torch.nn.Module):
    """An image encoder that returns a fixed embedding: the vit_b encoder costs 20-60 s per call on
    the shared CI cores and its equivalence is tested elsewhere; this test is about the generator
    and the vit_b-sized decoder."""

    def __init__(self, encoder: torch.nn.Module, embedding: torch.Tensor) -> None:
        super().__init__()
        self.img_size = encoder.img_size
        self.embedding = embedding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding.expand(x.shape[0], -1, -1, -1)


@pytest.mark.slow
def test_vit_b_same_records_as_official():
    sa = reference("segment_anything")
    official = structured_(official_sam(VIT_B_CONFIG, seed=0), sharpness=300, offset=0.4, iou_shift=0.6)
    ours = ours_from(official, VIT_B_CONFIG)
    image = scene(192, 256)
    # Unit-variance channels, like the encoder's LayerNorm2d output, smooth enough to give regions.
    noise = torch.randn((1, 256, 16, 16), generator=torch.Generator().manual_seed(0))
    embedding = torch.nn.functional.interpolate(noise, (64, 64), mode="bilinear", align_corners=False)
    embedding = (embedding - embedding.mean((2, 3), keepdim=True)) / embedding.std((2, 3), keepdim=True)
    official.image_encoder = CachedEncoder(official.image_encoder, embedding)
    if ours is not official:
        ours.image_encoder = CachedEncoder(ours.image_encoder, embedding)
    params = dict(points_per_side=3, pred_iou_thresh=0, stability_score_thresh=0, min_mask_region_area=100)
    expected = sa.SamAutomaticMaskGenerator(official, **params).generate(image)
    actual = MaskGenerator(ours, **params).generate(image)
    assert len(expected) >= 1
    assert_same_records(expected, actual)


# --- large images: candidates judged on the model frame, masks built only for survivors -----------

LARGE_CASES = [
    pytest.param(
        dict(points_per_side=4, pred_iou_thresh=0, stability_score_thresh=0, crop_n_layers=1),
        10,
        id="thresholds-0",
    ),
    pytest.param(
        dict(
            points_per_side=6,
            pred_iou_thresh=0.5,
            stability_score_thresh=0.5,
            min_mask_region_area=100,
            output_mode="coco_rle",
        ),
        2,
        id="small-regions-coco",
    ),
]


@pytest.mark.parametrize(("params", "at_least"), LARGE_CASES)
def test_large_image_same_records_as_official(small_models, monkeypatch, params, at_least):
    """640x480 is 2.5x the small model's input per side: the whole-image crop is judged on the
    model frame (engine.automatic.upsampling), the layer-1 crops (402x322) at full resolution."""
    from engine.automatic import judging

    official, ours = small_models
    sa = reference("segment_anything")
    judged = []
    original = judging.threshold_stats
    monkeypatch.setattr(
        judging,
        "threshold_stats",
        lambda frame, *a: judged.append(len(frame)) or original(frame, *a),
    )
    image = scene(480, 640, seed=5)
    expected = sa.SamAutomaticMaskGenerator(official, **params).generate(image)
    actual = MaskGenerator(ours, **params).generate(image)
    assert sum(judged) > 0
    assert len(expected) >= at_least, "the test model gives too few masks to compare anything"
    assert_same_records(expected, actual)


def test_full_resolution_masks_are_built_only_for_survivors_in_bounded_chunks(small_models, monkeypatch):
    """The streaming property: on a large image, crop-size logits (megabytes per mask) exist only
    for the masks that survive NMS, a bounded chunk at a time, not for every candidate."""
    _, ours = small_models
    built = []
    original = MaskGenerator._upsample

    def counting(self, low_res, input_size, crop_size, **kwargs):
        logits = original(self, low_res, input_size, crop_size, **kwargs)
        built.append(logits.shape[0])
        return logits

    monkeypatch.setattr(MaskGenerator, "_upsample", counting)
    height, width = 1200, 1600
    bytes_per_mask = 4 * (256 * 256 + 2 * height * width) + height * width
    generator = MaskGenerator(
        ours,
        points_per_side=8,
        pred_iou_thresh=0,
        stability_score_thresh=0,
        max_chunk_bytes=4 * bytes_per_mask,
    )
    records = generator.generate(scene(height, width, seed=6))
    candidates = 8 * 8 * 3
    assert 3 <= len(records) < candidates // 2, "the case must have survivors and rejected candidates"
    assert sum(built) == len(records)
    assert max(built) <= 4


def test_survivor_logits_over_the_budget_are_decoded_again(small_models, monkeypatch):
    from engine.automatic import generator as generator_module

    _, ours = small_models
    image = scene(600, 800, seed=4)
    params = dict(points_per_side=6, pred_iou_thresh=0, stability_score_thresh=0, points_per_batch=8)
    stored = MaskGenerator(ours, **params).generate(image)
    decodes = []
    original = generator_module.decode_points
    monkeypatch.setattr(generator_module, "decode_points", lambda *a: decodes.append(1) or original(*a))
    decoded_again = MaskGenerator(ours, **params, max_stored_logits_bytes=0).generate(image)
    batches = -(-36 // 8)
    assert len(decodes) > batches
    full_resolution = MaskGenerator(ours, **params, model_frame_stats_from=float("inf")).generate(image)
    assert len(stored) >= 5
    assert_same_records(stored, decoded_again)
    assert_same_records(full_resolution, stored)


def test_survivors_keep_logits_within_the_budget():
    from engine.automatic.amg import Survivors as _Survivors

    survivors = _Survivors(budget=2 * 10 * 4 * 4 * 4)  # two batches of 10 masks of 4x4 float32
    logits = {batch: torch.full((10, 4, 4), float(batch)) for batch in range(3)}
    for batch in range(3):
        rows = torch.arange(10)
        survivors.add(batch, rows, logits[batch], torch.zeros((10, 4)), torch.zeros(10), torch.zeros((10, 2)))
        assert survivors.stored_bytes <= survivors.budget
    decoded = []

    def decode_again(batch):
        decoded.append(batch)
        return torch.full((10, 4, 4), float(batch)), None, None

    assert survivors.logits(0, [7, 2], lambda: decode_again(0)).eq(0.0).all()
    assert survivors.logits(2, [1], lambda: decode_again(2)).eq(2.0).all()
    assert decoded == [2]
    assert survivors.stored_bytes == 10 * 4 * 4 * 4  # batch 1 still held, batch 0 released
