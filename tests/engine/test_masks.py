"""engine.masks: RLE, boxes, stability, NMS against the brute-force reference, small regions."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

import engine.masks
from engine.masks import (
    batched_nms,
    box_xyxy_to_xywh,
    decode_rle,
    encode_rle,
    encode_rle_batch,
    mask_areas,
    masks_to_boxes,
    nms,
    remove_small_regions,
    rle_area,
    rle_to_bbox,
    rle_to_uncompressed,
    stability_score,
    uncrop_rle,
    validate_rle,
)
from tests.reference import STUBS


@pytest.fixture(scope="module")
def reference_boxes():
    """The brute-force NMS in tests/stubs (an independent, deliberately naive implementation)."""
    if STUBS not in sys.path:
        sys.path.insert(0, STUBS)
    from torchvision.ops import boxes

    return boxes


def random_masks(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    field = torch.nn.functional.interpolate(torch.randn((n, 1, h // 4, w // 4), generator=gen), (h, w))[:, 0]
    return field > 0.5


def test_encode_rle_batch_matches_single_and_decodes_back():
    masks = random_masks(5, 37, 53)
    masks[2] = False
    masks[3] = True
    batch = encode_rle_batch(masks)
    assert batch == [encode_rle(m.numpy()) for m in masks]
    assert batch == encode_rle_batch(masks.numpy())
    for rle, mask in zip(batch, masks):
        assert isinstance(rle["counts"], str)
        np.testing.assert_array_equal(decode_rle(rle), mask.numpy())
        assert rle_area(rle) == int(mask.sum())
    assert encode_rle_batch(torch.zeros((0, 4, 4), dtype=torch.bool)) == []
    with pytest.raises(ValueError, match="3-D"):
        encode_rle_batch(torch.zeros((4, 4), dtype=torch.bool))


def test_uncrop_rle_places_the_mask_in_the_image_frame():
    crop = random_masks(1, 40, 28, seed=3)[0].numpy()
    crop[0, 0] = crop[-1, -1] = True  # touching the crop's corners
    image = np.zeros((70, 90), dtype=bool)
    image[25:65, 50:78] = crop
    assert uncrop_rle(encode_rle(crop), [50, 25, 78, 65], 70, 90) == encode_rle(image)
    whole = encode_rle(image)
    assert uncrop_rle(whole, [0, 0, 90, 70], 70, 90) == whole
    with pytest.raises(ValueError, match="does not hold"):
        uncrop_rle(encode_rle(crop), [50, 25, 78, 64], 70, 90)
    with pytest.raises(ValueError, match="does not hold"):
        uncrop_rle(encode_rle(crop), [70, 25, 98, 65], 70, 90)


@pytest.mark.parametrize("seed", range(6))
def test_uncrop_rle_equals_placing_the_decoded_mask(seed):
    """Run-level uncropping against the plain way, over shapes where runs cross column ends, the
    crop is as tall as the image (pieces touch across columns) and masks are empty or full."""
    rng = np.random.default_rng(seed)
    for trial in range(200):
        height, width = (int(v) for v in rng.integers(1, 30, 2))
        crop_h, crop_w = int(rng.integers(1, height + 1)), int(rng.integers(1, width + 1))
        if trial % 4 == 0:
            crop_h = height
        y0, x0 = int(rng.integers(0, height - crop_h + 1)), int(rng.integers(0, width - crop_w + 1))
        crop = rng.random((crop_h, crop_w)) < [0.0, 0.05, 0.5, 0.95, 1.0][trial % 5]
        image = np.zeros((height, width), dtype=bool)
        image[y0 : y0 + crop_h, x0 : x0 + crop_w] = crop
        box = [x0, y0, x0 + crop_w, y0 + crop_h]
        assert uncrop_rle(encode_rle(crop), box, height, width) == encode_rle(image)
        if (crop_h, crop_w) != (height, width):  # (the whole image comes back as it was given)
            uncompressed = rle_to_uncompressed(encode_rle(crop))
            assert uncrop_rle(uncompressed, box, height, width) == encode_rle(image)


def test_encode_rle_batch_takes_column_major_masks():
    masks = random_masks(3, 20, 30, seed=5)
    expected = encode_rle_batch(masks)
    assert encode_rle_batch(masks.transpose(1, 2).contiguous(), column_major=True) == expected
    assert encode_rle_batch(masks.transpose(1, 2).numpy(), column_major=True) == expected


def test_uncompressed_rle_matches_pycocotools():
    for mask in random_masks(3, 20, 30, seed=1):
        mask = mask.numpy()
        mask[0, 0] = True
        rle = rle_to_uncompressed(encode_rle(mask))
        assert rle["counts"][0] == 0 and sum(rle["counts"]) == 600
        back = mask_utils.decode(mask_utils.frPyObjects(rle, 20, 30)).astype(bool)
        np.testing.assert_array_equal(back, mask)


def test_boxes_and_areas():
    masks = torch.zeros((3, 10, 12), dtype=torch.bool)
    masks[0, 2:5, 3:9] = True
    masks[1, 7, 11] = True
    boxes = masks_to_boxes(masks)
    assert boxes.tolist() == [[3, 2, 8, 4], [11, 7, 11, 7], [0, 0, 0, 0]]
    assert box_xyxy_to_xywh(boxes).tolist() == [[3, 2, 5, 2], [11, 7, 0, 0], [0, 0, 0, 0]]
    assert mask_areas(masks).tolist() == [18, 1, 0]
    # Stored boxes follow SA-1B: width = x_max - x_min.
    assert rle_to_bbox(encode_rle(masks[0].numpy())) == [3.0, 2.0, 5.0, 2.0]
    assert rle_to_bbox(encode_rle(masks[2].numpy())) == [0.0, 0.0, 0.0, 0.0]


def test_stability_score_vectorised_equals_definition():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn((2, 3, 16, 16), generator=gen) * 3
    scores = stability_score(logits, 0.0, 1.0)
    assert scores.shape == (2, 3)
    for idx in np.ndindex(2, 3):
        high, low = logits[idx] > 1, logits[idx] > -1
        assert scores[idx].item() == pytest.approx(((high & low).sum() / (high | low).sum()).item())
    assert torch.isnan(stability_score(torch.full((1, 4, 4), -5.0), 0.0, 1.0)).all()


@pytest.mark.parametrize("seed", range(6))
def test_nms_equals_brute_force(reference_boxes, seed):
    gen = torch.Generator().manual_seed(seed)
    n = [0, 1, 7, 20, 40, 60][seed]
    xy = torch.randint(0, 50, (n, 2), generator=gen).float()
    wh = torch.randint(0, 30, (n, 2), generator=gen).float()  # includes zero-size boxes
    boxes = torch.cat([xy, xy + wh], dim=1)
    if n > 4:
        boxes[3] = boxes[2]  # identical boxes
    scores = torch.randint(0, 5, (n,), generator=gen).float()  # many ties
    for threshold in (0.0, 0.5, 1.0):
        expected = reference_boxes.nms(boxes, scores, threshold)
        assert nms(boxes, scores, threshold).tolist() == expected.tolist()
        assert nms(boxes, scores, threshold, block=16).tolist() == expected.tolist()
        with pytest.MonkeyPatch.context() as patch:  # blocks cut down by the pair budget
            patch.setattr(engine.masks, "_NMS_PAIRS_PER_BLOCK", 3 * max(n, 1))
            assert nms(boxes, scores, threshold).tolist() == expected.tolist()
    categories = torch.randint(0, 3, (n,), generator=gen)
    assert (
        batched_nms(boxes, scores, categories, 0.5).tolist()
        == reference_boxes.batched_nms(boxes, scores, categories, 0.5).tolist()
    )


def test_nms_rejects_bad_shapes():
    with pytest.raises(ValueError, match="N x 4"):
        nms(torch.zeros((3, 3)), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match="scores"):
        nms(torch.zeros((3, 4)), torch.zeros(2), 0.5)


def reference_remove_small_regions(mask, area, mode):
    """Flood-fill based independent check of the semantics (8-connectivity)."""
    import cv2

    target = ~mask if mode == "holes" else mask
    n, labels = cv2.connectedComponents(target.astype(np.uint8), connectivity=8)
    out = mask.copy()
    sizes = {i: int((labels == i).sum()) for i in range(1, n)}
    small = [i for i, s in sizes.items() if s < area]
    if mode == "holes":
        for i in small:
            out[labels == i] = True
    else:
        if len(small) == len(sizes) and sizes:
            small.remove(max(sizes, key=sizes.get))
        for i in small:
            out[labels == i] = False
    return out


def test_remove_small_regions():
    mask = np.zeros((30, 30), bool)
    mask[2:20, 2:20] = True
    mask[5:7, 5:7] = False  # small hole (4 px)
    mask[10:18, 10:18] = False  # big hole (64 px)
    mask[25, 25] = True  # small island
    filled, changed = remove_small_regions(mask, 10, "holes")
    assert changed and filled[5:7, 5:7].all() and not filled[10:18, 10:18].any()
    cleaned, changed = remove_small_regions(filled, 10, "islands")
    assert changed and not cleaned[25, 25] and cleaned[2, 2]
    same, changed = remove_small_regions(cleaned, 10, "islands")
    assert not changed and (same == cleaned).all()
    # Every island small: the largest stays.
    dots = np.zeros((10, 10), bool)
    dots[1, 1] = True
    dots[5:7, 5:7] = True
    kept, changed = remove_small_regions(dots, 100, "islands")
    assert changed and kept.sum() == 4 and kept[5, 5]
    for mode in ("holes", "islands"):
        for seed in range(3):
            random = random_masks(1, 40, 40, seed=seed)[0].numpy()
            ours, _ = remove_small_regions(random, 20, mode)
            expected = reference_remove_small_regions(random, 20, mode)
            np.testing.assert_array_equal(ours, expected)
    with pytest.raises(ValueError, match="mode"):
        remove_small_regions(mask, 10, "edges")


def test_validate_rle_reasons():
    rle = encode_rle(np.eye(4, dtype=bool))
    assert validate_rle(rle, 4, 4) == rle
    with pytest.raises(ValueError, match="does not match"):
        validate_rle(rle, 5, 4)
    with pytest.raises(ValueError, match="add up"):
        validate_rle({"size": [4, 5], "counts": rle["counts"]})
