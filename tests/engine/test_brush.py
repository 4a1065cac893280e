"""The brush RLE adapter round-trips through label-studio-sdk and refuses what does not fit."""

from __future__ import annotations

import numpy as np
import pytest
from label_studio_sdk.converter import brush as ls_brush

from engine.formats.brush import BrushFormatError, brush_rle_to_mask, mask_to_brush_rle


def _mask(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.zeros((height, width), bool)
    mask[5:20, 10:40] = True
    mask[rng.integers(0, height, 30), rng.integers(0, width, 30)] = True
    return mask


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_round_trip_is_exact(seed):
    mask = _mask(seed=seed)
    assert np.array_equal(brush_rle_to_mask(mask_to_brush_rle(mask), 48, 64), mask)


def test_label_studio_decodes_what_we_write():
    mask = _mask()
    decoded = ls_brush.decode_rle(mask_to_brush_rle(mask)).reshape(48, 64, 4)[:, :, 3]
    assert np.array_equal(decoded > 0, mask)


def test_empty_and_full_masks():
    for mask in (np.zeros((7, 5), bool), np.ones((7, 5), bool)):
        assert np.array_equal(brush_rle_to_mask(mask_to_brush_rle(mask), 7, 5), mask)


@pytest.mark.parametrize(
    "rle, reason",
    [([], "non-empty"), ([1, 2], "too short"), ([0, 0, 1, 0, 300], "byte values"), ("abc", "list")],
)
def test_malformed_rle_is_refused(rle, reason):
    with pytest.raises(BrushFormatError):
        brush_rle_to_mask(rle, 8, 8)


def test_size_mismatch_is_refused():
    with pytest.raises(BrushFormatError, match="needs"):
        brush_rle_to_mask(mask_to_brush_rle(_mask()), 47, 64)


def test_truncated_rle_is_refused():
    rle = mask_to_brush_rle(_mask())
    with pytest.raises(BrushFormatError):
        brush_rle_to_mask(rle[: len(rle) // 2], 48, 64)
