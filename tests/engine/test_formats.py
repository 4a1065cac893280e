"""engine.formats: COCO, Label Studio and PNG writers and readers, and the export's pixel work
(resize, privacy blur), on real encoders (pycocotools, label-studio-sdk, OpenCV)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from label_studio_sdk.converter import brush as ls_brush
from pycocotools.coco import COCO

from engine.formats import coco, imaging, label_studio, png
from engine.masks import decode_rle, encode_rle

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def blobs(seed: int, height: int = 60, width: int = 80, count: int = 4) -> list[np.ndarray]:
    """Random discs and boxes, some with holes and stray pixels, some overlapping."""
    rng = np.random.default_rng(seed)
    masks = []
    for index in range(count):
        mask = np.zeros((height, width), np.uint8)
        center = (int(rng.integers(5, width - 5)), int(rng.integers(5, height - 5)))
        cv2.circle(mask, center, int(rng.integers(3, 20)), 1, -1)
        if index % 2:
            cv2.circle(mask, center, int(rng.integers(1, 3)), 0, -1)  # a hole
        mask[rng.random((height, width)) < 0.005] = 1
        masks.append(mask.astype(bool))
    return masks


def write_coco(tmp_path: Path, polygons: bool, images: int = 3) -> tuple[Path, dict[int, np.ndarray]]:
    writer = coco.CocoWriter(
        tmp_path / "coco.json", [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}], polygons
    )
    stored = {}
    next_id = 1
    for image_id in range(1, images + 1):
        anns = []
        for mask in blobs(image_id):
            anns.append(
                {
                    "id": next_id,
                    "category_id": 1 + next_id % 2,
                    "segmentation": encode_rle(mask),
                    "score": 0.5,
                }
            )
            stored[next_id] = mask
            next_id += 1
        writer.add_image({"id": image_id, "file_name": f"img{image_id}.jpg", "width": 80, "height": 60}, anns)
    writer.close()
    return tmp_path / "coco.json", stored


def test_coco_rle_loads_in_pycocotools_and_masks_are_exact(tmp_path):
    path, stored = write_coco(tmp_path, polygons=False)
    api = COCO(str(path))
    assert len(api.getAnnIds()) == len(stored)
    for ann_id, mask in stored.items():
        ann = api.loadAnns(ann_id)[0]
        assert np.array_equal(api.annToMask(ann).astype(bool), mask)
        ys, xs = np.nonzero(mask)
        # COCO's box convention: width = x_max - x_min + 1.
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert ann["area"] == mask.sum() and ann["iscrowd"] == 0 and ann["score"] == 0.5
    assert not list(tmp_path.glob("*.partial"))


def test_coco_polygons_rasterise_back_to_the_mask(tmp_path):
    path, stored = write_coco(tmp_path, polygons=True)
    api = COCO(str(path))
    for ann_id, mask in stored.items():
        ann = api.loadAnns(ann_id)[0]
        assert isinstance(ann["segmentation"], list)
        back = api.annToMask(ann).astype(bool)
        iou = (back & mask).sum() / (back | mask).sum()
        assert iou >= 0.98, (ann_id, iou)


def test_coco_writer_is_deterministic(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, _ = write_coco(tmp_path / "a", polygons=False)
    second, _ = write_coco(tmp_path / "b", polygons=False)
    assert first.read_bytes() == second.read_bytes()


def test_coco_reader_round_trip_and_crowd(tmp_path):
    path, stored = write_coco(tmp_path, polygons=False)
    images = coco.read_coco(path.read_bytes())
    got = [decode_rle(a["segmentation"]) for _, a in coco.iter_annotations(images)]
    assert all(np.array_equal(a, b) for a, b in zip(got, stored.values(), strict=True))
    crowd = {"size": [2, 3], "counts": [1, 2, 3]}
    doc = {
        "images": [{"id": 5, "file_name": "dir/x.png", "width": 3, "height": 2}],
        "annotations": [{"id": 1, "image_id": 5, "category_id": 7, "segmentation": crowd, "iscrowd": 1}],
        "categories": [{"id": 7, "name": "crowd"}],
    }
    (image,) = coco.read_coco(json.dumps(doc))
    assert image.file_name == "x.png" and image.annotations[0]["iscrowd"]
    assert decode_rle(image.annotations[0]["segmentation"]).sum() == 2


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ("{nope", "not valid JSON"),
        ({"images": {}}, "images"),
        ({"images": [{"id": 1, "file_name": "a", "width": 0, "height": 2}], "annotations": []}, "positive"),
        (
            {"images": [], "annotations": [{"id": 3, "image_id": 9, "segmentation": []}]},
            "annotation 3: image_id 9",
        ),
        (
            {
                "images": [{"id": 1, "file_name": "a", "width": 2, "height": 2}],
                "annotations": [{"id": 4, "image_id": 1, "segmentation": {"size": [2, 2], "counts": "zz"}}],
            },
            "annotation 4: segmentation",
        ),
        (
            {
                "images": [{"id": 1, "file_name": "a", "width": 2, "height": 2}],
                "annotations": [{"id": 4, "image_id": 1, "segmentation": [[0, 0, 1, float("nan"), 1, 1]]}],
            },
            "polygons",
        ),
    ],
)
def test_coco_reader_says_what_is_wrong(doc, reason):
    with pytest.raises(coco.CocoFormatError, match=reason):
        coco.read_coco(doc if isinstance(doc, str) else json.dumps(doc))


def test_label_studio_tasks_decode_with_the_sdk_and_read_back(tmp_path):
    writer = label_studio.TasksWriter(
        tmp_path / "tasks.json", image_url="/data/local-files/?d=photos/{file_name}"
    )
    masks = blobs(7)
    results = [
        label_studio.brush_result(encode_rle(m), "cat", f"m{i}", {"mask_id": i}) for i, m in enumerate(masks)
    ]
    writer.add_task({"id": 3, "file_name": "a b.jpg", "width": 80, "height": 60}, results)
    writer.close()
    tasks = json.loads((tmp_path / "tasks.json").read_bytes())
    for result, mask in zip(tasks[0]["annotations"][0]["result"], masks, strict=True):
        flat = ls_brush.decode_rle(result["value"]["rle"]).reshape(60, 80, 4)[:, :, 3] > 0
        assert np.array_equal(flat, mask)
    (task,) = label_studio.read_tasks((tmp_path / "tasks.json").read_bytes())
    assert task.file_name == "a b.jpg"
    assert all(
        np.array_equal(decode_rle(r.to_rle(60, 80)), m) for r, m in zip(task.results, masks, strict=True)
    )
    assert "BrushLabels" in label_studio.label_config([("cat", "#ff0000")])


def test_label_studio_reader_polygons_rectangles_and_names():
    doc = [
        {
            "id": 1,
            "data": {"image": "/data/upload/3/1a2b3c4d-cat.jpg"},
            "annotations": [
                {
                    "result": [
                        {"type": "polygonlabels", "original_width": 100, "original_height": 50,
                         "value": {"points": [[10, 10], [50, 10], [50, 60]], "polygonlabels": ["cat"]}},
                        {"type": "rectanglelabels", "value": {"x": 10, "y": 20, "width": 30, "height": 40,
                                                              "rectanglelabels": ["box"]}},
                        {"type": "choices", "value": {"choices": ["x"]}},
                    ]
                },
                {"was_cancelled": True, "result": [{"type": "brushlabels", "value": {}}]},
            ],
        }
    ]  # fmt: skip
    (task,) = label_studio.read_tasks(json.dumps(doc))
    assert task.file_name == "cat.jpg" and task.ignored == 1
    polygon, rectangle = task.results
    assert decode_rle(polygon.to_rle(50, 100)).sum() > 100
    assert rectangle.box(50, 100).tolist() == [10, 10, 40, 30]
    with pytest.raises(ValueError, match="80x60"):
        polygon.to_rle(60, 80)
    assert label_studio.file_name_from_url("/data/local-files/?d=a/b%20c.png") == "b c.png"


def _one_result(result: dict) -> list[dict]:
    return [{"data": {"image": "x.jpg"}, "annotations": [{"result": [result]}]}]


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ("[", "not valid JSON"),
        ([{"data": {}}], "no image URL"),
        (_one_result({"type": "brushlabels", "value": {"rle": 3}}), "brush"),
        (_one_result({"type": "polygonlabels", "value": {"points": [[1, 2]]}}), "3 \\[x, y\\]"),
    ],
)  # fmt: skip
def test_label_studio_reader_says_what_is_wrong(doc, reason):
    with pytest.raises(label_studio.LabelStudioFormatError, match=reason):
        label_studio.read_tasks(doc if isinstance(doc, str) else json.dumps(doc))


def test_bad_brush_rle_is_a_value_error():
    (task,) = label_studio.read_tasks(
        json.dumps([{"data": {"image": "x.jpg"}, "annotations": [{"result": [
            {"type": "brushlabels", "value": {"format": "rle", "rle": [0, 0, 0, 9, 1]}}]}]}])
    )  # fmt: skip
    with pytest.raises(ValueError, match="brush RLE"):
        task.results[0].to_rle(10, 10)


def test_png_overlap_rule_and_round_trip():
    big = np.zeros((20, 30), bool)
    big[2:18, 2:28] = True
    small = np.zeros((20, 30), bool)
    small[5:10, 5:10] = True
    masks = [
        png.PngMask(7, encode_rle(small), int(small.sum()), 2),
        png.PngMask(3, encode_rle(big), int(big.sum()), 1),
    ]
    instance, semantic, legend = png.render(masks, 20, 30)
    assert [row["mask_id"] for row in legend] == [3, 7]
    back = png.decode_png(png.encode_png(instance))
    assert back.dtype == np.uint16 and np.array_equal(back, instance)
    visible = png.instance_masks(back)
    assert np.array_equal(visible[2], small)  # the smaller mask is on top
    assert np.array_equal(visible[1], big & ~small)
    assert semantic[6, 6] == 2 and semantic[15, 20] == 1 and semantic[0, 0] == 0
    assert png.encode_png(instance) == png.encode_png(instance.copy())


def test_resize_keeps_masks_on_the_image():
    assert imaging.target_size(1000, 3000, 500) == (500, 1500)
    assert imaging.target_size(100, 300, 500) == (100, 300)
    mask = np.zeros((100, 300), bool)
    mask[20:60, 30:90] = True
    small = imaging.resize_rle(encode_rle(mask), 50, 150)
    assert (
        small["size"] == [50, 150]
        and decode_rle(small)[10:30, 15:45].all()
        and decode_rle(small).sum() == 600
    )


def test_privacy_blur_finds_and_blurs_a_real_face():
    photo = SHARED / "sample-photos" / "astronaut.png"
    if not photo.is_file():
        pytest.skip("../shared/data/sample-photos/astronaut.png is absent (shared data not checked out)")
    pixels = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    regions = imaging.detect(pixels, ("face",))
    assert regions and all(r["kind"] == "face" for r in regions)
    blurred = imaging.blur_regions(pixels, regions)
    x, y, w, h = regions[0]["box"]
    before = cv2.Laplacian(pixels[y : y + h, x : x + w], cv2.CV_64F).var()
    after = cv2.Laplacian(blurred[y : y + h, x : x + w], cv2.CV_64F).var()
    assert after < before / 5
    assert imaging.detect(np.zeros((64, 64, 3), np.uint8), ("face", "plate")) == []
