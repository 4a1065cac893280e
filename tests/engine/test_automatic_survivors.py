"""MaskGenerator against segment_anything on region-like weights (tests/region_models), where
many distinct masks survive the filters and NMS: the path that judges candidates on the low-res
logits and builds full-resolution masks only for NMS survivors must give the official records."""

from __future__ import annotations

import pytest

from engine.automatic import MaskGenerator
from tests.engine.test_automatic import assert_same_records, ours_from, scene
from tests.reference import reference
from tests.region_models import REGION_SMALL_CONFIG, region_sam

pytestmark = pytest.mark.reference


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
    assert_same_records(expected, actual)


def test_low_res_judging_equals_full_resolution_judging(region_models):
    _, ours = region_models
    params = dict(points_per_side=8, pred_iou_thresh=0, stability_score_thresh=0)
    image = scene(192, 256, seed=8)
    fast = MaskGenerator(ours, **params, low_res_stats_from=0).generate(image)
    full = MaskGenerator(ours, **params, low_res_stats_from=10**9).generate(image)
    assert len(full) >= 10
    assert_same_records(full, fast)
