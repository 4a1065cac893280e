"""The weight-free classic segmenter: Predictor API, prompts → masks on synthetic images, input
validation, and sane click-protocol figures on a few real COCO-MVal objects."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.classic import ClassicPredictor
from engine.evaluation import evaluate_dataset, load_click_dataset, mask_iou, summarize

COCO_MVAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "coco-mval-subset"
if not COCO_MVAL.is_dir():
    COCO_MVAL = Path("/work/shared/data/coco-mval-subset")


def textured_background(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), np.float32)
    image[:] = (60, 110, 50)
    image += rng.normal(0, 12, image.shape)
    return image


def disk_scene(height: int = 240, width: int = 320) -> tuple[np.ndarray, np.ndarray]:
    """A red disk on a noisy green background, and its mask."""
    image = textured_background(height, width)
    gt = np.zeros((height, width), np.uint8)
    cv2.circle(gt, (170, 110), 60, 1, -1)
    image[gt > 0] = np.array((200, 50, 50)) + np.random.default_rng(1).normal(0, 12, (int(gt.sum()), 3))
    return np.clip(image, 0, 255).astype(np.uint8), gt > 0


def two_squares_scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two touching squares of the same colour: without a correction they read as one object."""
    image = textured_background(200, 300)
    left = np.zeros((200, 300), bool)
    left[50:150, 40:140] = True
    right = np.zeros((200, 300), bool)
    right[50:150, 140:240] = True
    image[left | right] = (220, 200, 40)
    return np.clip(image, 0, 255).astype(np.uint8), left, right


@pytest.fixture(scope="module")
def disk():
    image, gt = disk_scene()
    predictor = ClassicPredictor()
    predictor.set_image(image)
    return predictor, image, gt


def test_identity_and_image_state(disk):
    predictor, _, _ = disk
    assert predictor.is_fallback is True and predictor.name == "classic"
    assert predictor.is_image_set
    assert predictor.original_size == (240, 320)
    assert predictor.input_size == (768, 1024)
    fresh = ClassicPredictor()
    assert not fresh.is_image_set
    with pytest.raises(RuntimeError, match="set_image"):
        fresh.predict(point_coords=np.array([[10, 10]]), point_labels=np.array([1]))


def test_one_click_segments_a_disk(disk):
    predictor, _, gt = disk
    masks, scores, low_res = predictor.predict(np.array([[170, 110]]), np.array([1]))
    assert masks.shape == (3, 240, 320) and masks.dtype == bool
    assert scores.shape == (3,) and low_res.shape == (3, 256, 256)
    assert mask_iou(masks[int(np.argmax(scores))], gt) > 0.9


def test_single_mask_output_and_logits_round_trip(disk):
    predictor, _, _ = disk
    masks, scores, low_res = predictor.predict(np.array([[170, 110]]), np.array([1]), multimask_output=False)
    assert masks.shape == (1, 240, 320) and scores.shape == (1,) and low_res.shape == (1, 256, 256)
    # The low-res logits are SAM-like: positive on the object in the 256-frame (scale 256/320).
    assert low_res[0, int(110 * 0.8), int(170 * 0.8)] > 0 and low_res[0, 5, 5] < 0
    again, _, _ = predictor.predict(
        np.array([[170, 110]]), np.array([1]), mask_input=low_res, multimask_output=False
    )
    assert mask_iou(again[0], masks[0]) > 0.98
    logits, _, _ = predictor.predict(
        np.array([[170, 110]]), np.array([1]), multimask_output=False, return_logits=True
    )
    assert logits.dtype == np.float32 and np.array_equal(logits[0] > 0, masks[0])


def test_box_prompt_segments_the_object_inside(disk):
    predictor, _, gt = disk
    masks, _, _ = predictor.predict(box=np.array([100, 40, 240, 180]), multimask_output=False)
    assert mask_iou(masks[0], gt) > 0.9


def test_mask_input_alone_from_foreign_logits(disk):
    predictor, _, gt = disk
    # Logits not produced by this predictor (e.g. from the API): a coarse square around the disk.
    logits = np.full((1, 256, 256), -10.0, np.float32)
    logits[0, 45:135, 95:180] = 10.0
    masks, _, _ = predictor.predict(mask_input=logits, multimask_output=False)
    assert mask_iou(masks[0], gt) > 0.8


def test_negative_click_removes_a_region():
    image, left, right = two_squares_scene()
    predictor = ClassicPredictor()
    predictor.set_image(image)
    masks, scores, low_res = predictor.predict(np.array([[90, 100]]), np.array([1]))
    best = int(np.argmax(scores))
    assert masks[best][right].mean() > 0.5, "the precondition: one click takes both squares"
    corrected, _, _ = predictor.predict(
        np.array([[90, 100], [190, 100]]),
        np.array([1, 0]),
        mask_input=low_res[best][None],
        multimask_output=False,
    )
    assert corrected[0][right].mean() < 0.2
    assert corrected[0][left].mean() > 0.8


def test_deterministic():
    image, _ = disk_scene()
    outputs = []
    for _ in range(2):
        predictor = ClassicPredictor()
        predictor.set_image(image)
        outputs.append(predictor.predict(np.array([[150, 100], [300, 20]]), np.array([1, 0])))
    for first, second in zip(*outputs):
        assert np.array_equal(first, second)


def test_bgr_input_gives_the_same_masks(disk):
    predictor, image, _ = disk
    rgb_masks, _, _ = predictor.predict(np.array([[170, 110]]), np.array([1]))
    bgr = ClassicPredictor()
    bgr.set_image(np.ascontiguousarray(image[:, :, ::-1]), image_format="BGR")
    bgr_masks, _, _ = bgr.predict(np.array([[170, 110]]), np.array([1]))
    assert np.array_equal(rgb_masks, bgr_masks)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "at least one prompt"),
        ({"point_coords": np.array([[10, 10]])}, "together"),
        ({"point_coords": np.array([10, 10]), "point_labels": np.array([1])}, r"\(N, 2\)"),
        ({"point_coords": np.array([[10, 10]]), "point_labels": np.array([1, 0])}, "point_labels"),
        ({"point_coords": np.array([[10, 10]]), "point_labels": np.array([2])}, "1 \\(object\\) or 0"),
        ({"point_coords": np.array([[np.nan, 10]]), "point_labels": np.array([1])}, "finite"),
        ({"point_coords": np.array([[400, 10]]), "point_labels": np.array([1])}, "outside"),
        ({"box": np.array([10, 10, 5, 50])}, "x1 > x0"),
        ({"box": np.array([1, 2, 3])}, "XYXY"),
        ({"box": np.array([500, 500, 600, 600])}, "does not overlap"),
        ({"mask_input": np.zeros((1, 64, 64))}, r"\(1, 256, 256\)"),
        ({"mask_input": np.full((1, 256, 256), np.inf)}, "finite"),
    ],
)
def test_input_validation(disk, kwargs, message):
    predictor, _, _ = disk
    with pytest.raises(ValueError, match=message):
        predictor.predict(**kwargs)


def test_image_validation_and_no_embedding():
    predictor = ClassicPredictor()
    with pytest.raises(ValueError, match="uint8"):
        predictor.set_image(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="HxWx3"):
        predictor.set_image(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="image_format"):
        predictor.set_image(np.zeros((10, 10, 3), np.uint8), image_format="HSV")
    with pytest.raises(NotImplementedError, match="no image embedding"):
        predictor.get_image_embedding()
    with pytest.raises(NotImplementedError, match="embedding"):
        predictor.set_embedding(None, (10, 10), (10, 10))


def test_only_negative_clicks_give_empty_low_scored_masks(disk):
    predictor, _, _ = disk
    masks, scores, _ = predictor.predict(np.array([[10, 10]]), np.array([0]))
    assert not masks.any() and np.all(scores == 0)


def test_coco_mval_figures_are_sane():
    if not COCO_MVAL.is_dir():
        pytest.skip(f"COCO-MVal subset not found at {COCO_MVAL} (../shared/data is not in this checkout)")
    instances = load_click_dataset(COCO_MVAL)[::32]  # 5 objects of different categories
    results = evaluate_dataset(ClassicPredictor(), instances, max_clicks=5)
    summary = summarize(results, max_clicks=5)
    miou = summary.miou
    assert summary.instances == 5
    assert 0.0 <= miou["mIoU@1"] <= miou["mIoU@3"] <= miou["mIoU@5"] <= 1.0
    assert miou["mIoU@5"] > 0.6
    assert 1.0 <= summary.noc["NoC@85"] <= summary.noc["NoC@90"] <= 5.0
