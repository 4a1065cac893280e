"""MaskGenerator against segment_anything on region-like weights (tests/region_models), where
many distinct masks survive the filters and NMS: the path that judges candidates on the low-res
logits and builds full-resolution masks only for NMS survivors must give the official records."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.automatic import MaskGenerator
from tests.engine.test_automatic import as_mask, assert_same_records, ours_from, scene
from tests.reference import reference
from tests.region_models import REGION_SMALL_CONFIG, region_sam

pytestmark = pytest.mark.reference


# Rounding in the region weights' logits (see within_logit_rounding).
LOGIT_ROUNDING = 1e-3


def within_logit_rounding(official, image):
    """Whether two records that differ do so only by pixels whose logit lies within
    ``LOGIT_ROUNDING`` of a threshold (0 for the mask, +-1 for the stability score), judged on
    segment_anything's ``SamPredictor`` logits for the record's point alone on its crop.

    The region weights compute each logit as a difference of terms around 10^3 (tests.region_models),
    so logits carry ~1e-4 of rounding that depends on the batch a prompt is decoded in (the
    reference's generator and its predictor disagree the same way), and the low-res logits come in
    4 x 4 blocks: a block that close to a threshold moves a dozen to a hundred pixels at once."""
    sa = reference("segment_anything")
    predictor = sa.SamPredictor(official)
    delta = LOGIT_ROUNDING

    @torch.no_grad()
    def check(want: dict, got: dict) -> bool:
        x, y, w, h = want["crop_box"]
        predictor.set_image(image[y : y + h, x : x + w])
        point = np.asarray(want["point_coords"], dtype=np.float64) - [x, y]
        logits, scores, _ = predictor.predict(point, np.array([1]), multimask_output=True, return_logits=True)
        logits = logits[int(np.argmin(np.abs(scores - want["predicted_iou"])))]
        ours, theirs = as_mask(got["segmentation"]), as_mask(want["segmentation"])
        ambiguous = np.zeros(image.shape[:2], dtype=bool)
        ambiguous[y : y + h, x : x + w] = np.abs(logits) < delta
        if ((ours != theirs) & ~ambiguous).any():
            return False
        inside = [(logits > 1.0 + delta).sum(), (logits > 1.0 - delta).sum()]
        union = [(logits > -1.0 + delta).sum(), (logits > -1.0 - delta).sum()]
        low, high = inside[0] / union[1], inside[1] / max(union[0], 1)
        return low - 1e-4 <= got["stability_score"] <= high + 1e-4

    return check


@pytest.fixture(scope="module")
def region_models():
    official = region_sam(REGION_SMALL_CONFIG, seed=0)
    return official, ours_from(official, REGION_SMALL_CONFIG)


CASES = [
    pytest.param(dict(points_per_side=12), 5, id="defaults"),
    pytest.param(
        dict(points_per_side=10, pred_iou_thresh=0, stability_score_thresh=0), 20, id="thresholds-0"
    ),
    pytest.param(
        dict(points_per_side=4, pred_iou_thresh=0, stability_score_thresh=0, crop_n_layers=1), 10, id="crops"
    ),
]


@pytest.mark.parametrize(("params", "at_least"), CASES)
def test_many_survivors_same_records_as_official(region_models, params, at_least):
    official, ours = region_models
    sa = reference("segment_anything")
    image = scene(192, 256, seed=7)
    expected = sa.SamAutomaticMaskGenerator(official, **params).generate(image)
    generator = MaskGenerator(ours, **params, low_res_stats_from=0)
    actual = generator.generate(image)
    assert len(expected) >= at_least, "the region model gives too few masks to exercise survivors"
    assert_same_records(expected, actual, within_logit_rounding(official, image))


def test_low_res_judging_equals_full_resolution_judging(region_models):
    _, ours = region_models
    params = dict(points_per_side=8, pred_iou_thresh=0, stability_score_thresh=0)
    image = scene(192, 256, seed=8)
    fast = MaskGenerator(ours, **params, low_res_stats_from=0).generate(image)
    full = MaskGenerator(ours, **params, low_res_stats_from=10**9).generate(image)
    assert len(full) >= 10
    assert_same_records(full, fast)
