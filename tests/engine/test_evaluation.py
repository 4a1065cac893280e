"""The click protocol and its metrics, checked on synthetic masks against brute-force geometry and
on a scripted predictor whose answers the test controls (this tests the protocol, not a model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine import evaluation
from engine.evaluation import (
    Click,
    InstanceResult,
    clicks_to_reach,
    evaluate_instance,
    first_click,
    load_click_dataset,
    mask_iou,
    next_click,
    summarize,
)


def brute_force_depth(region: np.ndarray) -> np.ndarray:
    """Euclidean distance from each region pixel to the nearest non-region pixel of the image
    padded by one pixel of background (so the border counts as boundary)."""
    padded = np.pad(region, 1)
    outside = np.argwhere(~padded)
    depth = np.zeros(region.shape)
    for y, x in np.argwhere(region):
        depth[y, x] = np.sqrt(((outside - (y + 1, x + 1)) ** 2).sum(axis=1)).min()
    return depth


def test_first_click_is_the_deepest_point_of_the_object():
    gt = np.zeros((30, 40), bool)
    gt[5:25, 3:20] = True  # a 20x17 rectangle ...
    gt[12:16, 20:38] = True  # ... with a thin arm that must not attract the click
    click = first_click(gt)
    depth = brute_force_depth(gt)
    assert click.positive
    assert depth[click.y, click.x] == pytest.approx(depth.max(), abs=1e-3)
    assert 5 <= click.y < 25 and 3 <= click.x < 20


def test_first_click_counts_the_image_border_as_boundary():
    gt = np.zeros((20, 20), bool)
    gt[:, :12] = True  # touches the top, bottom and left borders
    click = first_click(gt)
    # Depth 6 from the left border and the right edge; had the border not counted, the click
    # would hug the left edge. Among the tied rows the first in row-major order wins.
    assert (click.y, click.x) == (5, 5)


def test_first_click_on_empty_ground_truth_is_refused():
    with pytest.raises(ValueError, match="empty"):
        first_click(np.zeros((5, 5), bool))


def test_next_click_goes_to_the_deeper_false_negative_region_as_a_positive_click():
    gt = np.zeros((40, 60), bool)
    gt[5:35, 5:55] = True
    pred = gt.copy()
    pred[10:30, 30:50] = False  # a 20x20 miss: depth 10
    pred[0:3, 0:10] = True  # a thin false positive: depth 2
    click = next_click(gt, pred)
    assert click == Click(x=click.x, y=click.y, positive=True)
    assert 10 <= click.y < 30 and 30 <= click.x < 50
    depth = brute_force_depth(gt & ~pred)
    assert depth[click.y, click.x] == pytest.approx(depth.max(), abs=1e-3)


def test_next_click_goes_to_the_deeper_false_positive_region_as_a_negative_click():
    gt = np.zeros((40, 60), bool)
    gt[5:35, 5:25] = True
    pred = gt.copy()
    pred[5:35, 30:58] = True  # a large spill outside the object
    pred[20:22, 10:12] = False  # a tiny hole inside
    click = next_click(gt, pred)
    assert not click.positive
    assert 5 <= click.y < 35 and 30 <= click.x < 58


def test_next_click_is_none_for_a_perfect_mask_and_shapes_must_match():
    gt = np.zeros((10, 10), bool)
    gt[2:8, 2:8] = True
    assert next_click(gt, gt.copy()) is None
    with pytest.raises(ValueError, match="shape"):
        next_click(gt, np.zeros((10, 11), bool))


def test_mask_iou():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    assert mask_iou(a, b) == 1.0
    a[0, :2] = True
    b[0, 1:3] = True
    assert mask_iou(a, b) == pytest.approx(1 / 3)


def test_clicks_to_reach_counts_clicks_and_falls_back_to_the_maximum():
    ious = [0.5, 0.86, 0.89, 0.91, 0.95]
    assert clicks_to_reach(ious, 0.85) == 2
    assert clicks_to_reach(ious, 0.90) == 4
    assert clicks_to_reach(ious, 0.99) == 5
    assert clicks_to_reach(ious, 0.90, max_clicks=3) == 3


class ScriptedPredictor:
    """Answers each round with the next mask of a script (plus two decoys when asked for three),
    recording the prompts it received so the test can check what the protocol sent."""

    def __init__(self, script: list[np.ndarray]):
        self.script = script
        self.calls: list[dict] = []
        self.images_set = 0

    def set_image(self, image, image_format="RGB"):
        self.images_set += 1

    def predict(self, point_coords=None, point_labels=None, box=None, mask_input=None, multimask_output=True):
        round_index = len(self.calls)
        self.calls.append(
            {
                "points": point_coords.copy(),
                "labels": point_labels.copy(),
                "mask_input": None if mask_input is None else mask_input.copy(),
                "multimask": multimask_output,
            }
        )
        mask = self.script[min(round_index, len(self.script) - 1)]
        logits = np.full((1, 256, 256), float(round_index), np.float32)
        if not multimask_output:
            return mask[None], np.array([0.5]), logits
        decoy = np.zeros_like(mask)
        # The right mask has the middle score: the protocol must pick by score, not by position.
        masks = np.stack([decoy, mask, decoy])
        return masks, np.array([0.1, 0.9, 0.3]), np.concatenate([logits - 100, logits, logits + 100])


def square(size: int, top: int, left: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[top : top + side, left : left + side] = True
    return mask


def test_protocol_feeds_back_logits_and_uses_multimask_on_the_first_click_only():
    gt = square(40, 5, 5, 30)
    script = [square(40, 5, 5, 15), square(40, 5, 5, 25), gt]
    predictor = ScriptedPredictor(script)
    result = evaluate_instance(predictor, gt, max_clicks=5, image=np.zeros((40, 40, 3), np.uint8))
    assert predictor.images_set == 1
    assert [call["multimask"] for call in predictor.calls] == [True, False, False]
    assert predictor.calls[0]["mask_input"] is None
    # Round 2 gets round 1's *chosen* logits (the best-scored one, value 0.0), round 3 round 2's.
    assert predictor.calls[1]["mask_input"].shape == (1, 256, 256)
    assert np.all(predictor.calls[1]["mask_input"] == 0.0)
    assert np.all(predictor.calls[2]["mask_input"] == 1.0)
    # Every round sends all clicks so far; the corrections here are positive.
    assert [len(call["points"]) for call in predictor.calls] == [1, 2, 3]
    assert predictor.calls[2]["labels"].tolist() == [1, 1, 1]
    iou_1, iou_2 = 15 * 15 / 900, 25 * 25 / 900
    assert result.ious == pytest.approx([iou_1, iou_2, 1.0, 1.0, 1.0])
    assert result.noc(0.85) == 3


def test_protocol_options_always_multimask_and_no_feedback():
    gt = square(40, 5, 5, 30)
    predictor = ScriptedPredictor([square(40, 5, 5, 20), gt])
    evaluate_instance(predictor, gt, max_clicks=3, multimask="always", feed_back_logits=False)
    assert all(call["multimask"] for call in predictor.calls)
    assert all(call["mask_input"] is None for call in predictor.calls)
    with pytest.raises(ValueError, match="multimask"):
        evaluate_instance(predictor, gt, multimask="sometimes")


def test_summary_arithmetic():
    results = [
        InstanceResult("a", [0.5, 0.8, 0.86, 0.9, 0.95], []),
        InstanceResult("b", [0.9, 0.9, 0.9, 0.9, 0.9], []),
        InstanceResult("c", [0.1, 0.2, 0.3, 0.4, 0.5], []),
    ]
    summary = summarize(results, max_clicks=5)
    assert summary.miou["mIoU@1"] == pytest.approx((0.5 + 0.9 + 0.1) / 3)
    assert summary.miou["mIoU@3"] == pytest.approx((0.86 + 0.9 + 0.3) / 3)
    assert summary.miou["mIoU@5"] == pytest.approx((0.95 + 0.9 + 0.5) / 3)
    assert summary.noc["NoC@85"] == pytest.approx((3 + 1 + 5) / 3)
    assert summary.noc["NoC@90"] == pytest.approx((4 + 1 + 5) / 3)
    assert summary.failures == 1 and summary.failed == ["c"]
    with pytest.raises(ValueError, match="fewer"):
        summarize(results, max_clicks=6)


def write_dataset(root: Path, names: list[str], size: int = 48) -> None:
    (root / "img").mkdir(parents=True)
    (root / "gt").mkdir()
    for index, name in enumerate(names):
        image = np.full((size, size, 3), 30, np.uint8)
        gt = np.zeros((size, size), np.uint8)
        gt[8 + index : 36, 10:40] = 255
        image[gt > 0] = (220, 180, 40)
        Image.fromarray(image).save(root / "img" / f"{name}.jpg", quality=95)
        Image.fromarray(gt).save(root / "gt" / f"{name}.png")


def test_dataset_loader_handles_spaces_and_sorts(tmp_path):
    write_dataset(tmp_path, ["tennis racket01_2", "airplane00_1", "tennis racket00_3"])
    instances = load_click_dataset(tmp_path)
    assert [i.name for i in instances] == ["airplane00_1", "tennis racket00_3", "tennis racket01_2"]
    image, gt = instances[1].load()
    assert image.shape == (48, 48, 3) and image.dtype == np.uint8
    assert gt.dtype == bool and gt.sum() == (36 - 10) * 30  # written third: rows 10..35
    assert len(load_click_dataset(tmp_path, limit=2)) == 2


def test_dataset_loader_errors(tmp_path):
    with pytest.raises(ValueError, match="img/ and gt/"):
        load_click_dataset(tmp_path)
    write_dataset(tmp_path, ["cat00_1"])
    (tmp_path / "img" / "cat00_1.jpg").unlink()
    with pytest.raises(ValueError, match="no image"):
        load_click_dataset(tmp_path)


def test_cli_prints_table_and_json(tmp_path, capsys):
    write_dataset(tmp_path / "data", ["dog00_1", "dog01_2"])
    out_json = tmp_path / "summary.json"
    code = evaluation.main(
        [
            "--dataset",
            str(tmp_path / "data"),
            "--max-clicks",
            "3",
            "--model",
            "classic",
            "--json",
            str(out_json),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "NoC@90" in printed and "mIoU@1" in printed
    payload = json.loads(printed.strip().splitlines()[-1])
    assert payload["instances"] == 2 and payload["max_clicks"] == 3
    assert json.loads(out_json.read_text())["miou"] == payload["miou"]
    # An easy high-contrast rectangle: the classic segmenter gets it within three clicks.
    assert payload["miou"]["mIoU@3"] > 0.85


def test_cli_refuses_sam_without_a_model_type(tmp_path, capsys):
    write_dataset(tmp_path / "data", ["dog00_1"])
    with pytest.raises(SystemExit) as exit_info:
        evaluation.main(["--dataset", str(tmp_path / "data"), "--model", "sam"])
    assert exit_info.value.code == 2
    assert "--model-type" in capsys.readouterr().err
