"""engine.automatic.upsampling: the counts and boxes it derives from the model frame must be those
of the upsampled masks, built here the plain way (torch's bilinear resize, threshold, count)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine.automatic import upsampling
from engine.automatic.upsampling import (
    ComposedResize,
    axis_plan,
    resize_matrix,
    threshold_stats,
    truncated_plan,
    upsample_to_model_frame,
)
from engine.masks import masks_to_boxes

THRESHOLDS = (-1.0, 0.0, 1.0)


def smooth_logits(n: int, height: int, width: int, seed: int) -> torch.Tensor:
    """Random logits with blobs a few pixels wide, like decoder output (no exact ties)."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.randn((n, 1, max(1, height // 4), max(1, width // 4)), generator=gen) * 4
    return F.interpolate(coarse, (height, width), mode="bilinear", align_corners=False)[:, 0] + 0.5


def brute_force(frame: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    full = F.interpolate(frame[:, None], size, mode="bilinear", align_corners=False)[:, 0]
    areas = torch.stack([(full > t).sum(dim=(1, 2)) for t in THRESHOLDS], dim=1)
    return areas, masks_to_boxes(full > 0.0)


@pytest.mark.parametrize(
    ("frame_size", "out_size"),
    [
        ((24, 32), (300, 400)),  # about 12x, as a 4000x3000 image on a 256 model
        ((31, 17), (64, 40)),  # uneven scale factors
        ((12, 16), (12, 16)),  # same size
        ((1, 9), (7, 30)),  # a single row
        ((9, 1), (20, 5)),  # a single column
    ],
)
def test_counts_and_boxes_equal_the_upsampled_masks(frame_size, out_size):
    frame = smooth_logits(6, *frame_size, seed=sum(out_size))
    frame[0] = 3.0  # everything above every threshold
    frame[1] = -3.0  # empty: box [0, 0, 0, 0]
    frame[2] = -3.0
    frame[2, frame_size[0] // 2, frame_size[1] // 3] = 2.5  # one small blob
    areas, boxes = threshold_stats(
        frame, axis_plan(frame_size[0], out_size[0]), axis_plan(frame_size[1], out_size[1]), THRESHOLDS, 0.0
    )
    want_areas, want_boxes = brute_force(frame, out_size)
    assert torch.equal(boxes, want_boxes)
    # Float rounding may flip a pixel whose value is within ulps of a threshold; nothing more.
    assert (areas - want_areas).abs().max() <= 1
    assert want_areas[:, 1].gt(0).sum() >= 4, "the case must have non-empty masks"


def test_work_in_blocks_gives_the_same_result(monkeypatch):
    frame = smooth_logits(4, 20, 30, seed=1)
    args = (frame, axis_plan(20, 170), axis_plan(30, 260), THRESHOLDS, 0.0)
    whole = threshold_stats(*args)
    monkeypatch.setattr(upsampling, "_COLUMNS_PER_BLOCK", 37)
    blocked = threshold_stats(*args)
    assert torch.equal(whole[0], blocked[0]) and torch.equal(whole[1], blocked[1])


def test_axis_plan_covers_every_output_index_once():
    for in_size, out_size in [(192, 3000), (5, 7), (1, 4), (64, 63)]:
        plan = axis_plan(in_size, out_size)
        assert int(plan.counts.sum()) == out_size
        assert torch.equal(plan.starts[1:], torch.cumsum(plan.counts, 0)[:-1])
    with pytest.raises(ValueError, match="positive"):
        axis_plan(0, 10)


def test_bad_arguments_say_what_is_wrong():
    frame = smooth_logits(1, 8, 8, seed=0)
    with pytest.raises(ValueError, match="plans for"):
        threshold_stats(frame, axis_plan(9, 20), axis_plan(8, 20), THRESHOLDS, 0.0)
    with pytest.raises(ValueError, match="box_threshold"):
        threshold_stats(frame, axis_plan(8, 20), axis_plan(8, 20), THRESHOLDS, 0.5)


@pytest.mark.parametrize(
    "input_size", [(768, 1024), (1024, 768), (1024, 1024), (683, 1024), (1, 1024), (767, 3)]
)
def test_model_frame_resizes_only_what_the_unpadding_keeps_bit_for_bit(input_size):
    low_res = torch.randn((3, 256, 256), generator=torch.Generator().manual_seed(1))
    padded = F.interpolate(low_res[:, None], (1024, 1024), mode="bilinear", align_corners=False)[:, 0]
    expected = padded[:, : input_size[0], : input_size[1]]
    assert torch.equal(upsample_to_model_frame(low_res, 1024, input_size), expected)


@pytest.mark.parametrize("input_size", [(48, 64), (64, 37), (64, 64)])
def test_low_res_stats_through_the_padded_resize_and_unpadding(input_size):
    """Counts and boxes from the low-res logits (16 x 16 → 64 x 64 padded frame, cut to the
    input size) equal those of the resized and cut masks."""
    low_res = smooth_logits(6, 16, 16, seed=3)
    rows = truncated_plan(axis_plan(16, 64), input_size[0])
    cols = truncated_plan(axis_plan(16, 64), input_size[1])
    counts, boxes = threshold_stats(low_res, rows, cols, THRESHOLDS, 0.0)
    full = upsample_to_model_frame(low_res, 64, input_size)
    expected = torch.stack([(full > t).sum(dim=(1, 2)) for t in THRESHOLDS], dim=1)
    assert torch.equal(counts, expected)
    assert torch.equal(boxes, masks_to_boxes(full > 0.0))


@pytest.mark.parametrize(
    ("in_size", "out_size"), [(256, 1024), (768, 448), (17, 40), (40, 17), (5, 5), (1, 3)]
)
def test_resize_matrix_is_torchs_bilinear_resize(in_size, out_size):
    """The weights of float32 logits' resize (torch works out positions in the input's type)."""
    identity = torch.eye(in_size)[None, None]
    expected = F.interpolate(identity, (out_size, in_size), mode="bilinear", align_corners=False)[0, 0]
    assert torch.equal(torch.as_tensor(resize_matrix(in_size, out_size), dtype=torch.float32), expected)


@pytest.mark.parametrize(
    ("img_size", "input_size", "crop_size"),
    [
        (1024, (768, 1024), (448, 597)),  # a second-layer crop of a 1024x768 image
        (1024, (683, 1024), (200, 300)),  # a small image, enlarged to the model's input
        (1024, (1024, 768), (600, 450)),  # portrait
        (128, (96, 128), (96, 127)),  # one column less
        (64, (64, 48), (3, 2)),  # tiny
    ],
)
def test_composed_resize_equals_the_two_resizes(img_size, input_size, crop_size):
    side = img_size // 4
    low_res = smooth_logits(5, side, side, seed=sum(crop_size)) * 8
    frame = F.interpolate(low_res[:, None], (img_size, img_size), mode="bilinear", align_corners=False)
    frame = frame[..., : input_size[0], : input_size[1]]
    expected = F.interpolate(frame, crop_size, mode="bilinear", align_corners=False)[:, 0]
    composed = ComposedResize((side, side), img_size, input_size, crop_size).transposed(low_res)
    assert composed.shape == (5, crop_size[1], crop_size[0])
    torch.testing.assert_close(composed.transpose(1, 2), expected, atol=1e-4, rtol=1e-5)


def test_composed_resize_is_for_crops_within_the_input():
    with pytest.raises(ValueError, match="must fit"):
        ComposedResize((256, 256), 1024, (768, 1024), (800, 600))
