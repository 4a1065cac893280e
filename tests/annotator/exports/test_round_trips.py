"""Export → import gives the same masks, for every format, through the service the task and the
command run; exports are deterministic and filtered."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest
from label_studio_sdk.converter import brush as ls_brush
from pycocotools.coco import COCO

from annotator.exports import services
from annotator.exports.imports import ImportRefused, import_bytes, import_path
from annotator.exports.models import Export
from annotator.jobs import JobStatus
from annotator.masks.models import Mask
from engine import sa1b
from engine.formats import png
from engine.masks import decode_rle

pytestmark = pytest.mark.django_db


def run(project, fmt, **kwargs) -> Export:
    export = services.create_export(project, fmt, enqueue=False, **kwargs)
    export = services.run_export(export.pk)
    assert export.status == JobStatus.DONE, export.error
    return export


def accepted(project) -> set[tuple[str, str, str | None]]:
    return {
        (m.image.original_name, m.segmentation["counts"], m.label.name if m.label else None)
        for m in Mask.objects.filter(project=project, status="accepted").select_related("image", "label")
    }


def test_coco_export_loads_in_pycocotools_and_imports_back(filled, twin):
    project, _images = filled
    export = run(project, "coco")
    assert export.images_done == export.images_total == 3 and export.masks_done == 12
    path = services.download_path(export, "instances.json")
    api = COCO(str(path))
    for mask in Mask.objects.filter(project=project, status="accepted"):
        ann = api.loadAnns(mask.pk)[0]
        assert np.array_equal(api.annToMask(ann).astype(bool), decode_rle(mask.segmentation))
        assert ann["source"] == mask.source and ann["predicted_iou"] == mask.predicted_iou
    assert {c["name"] for c in api.loadCats(api.getCatIds())} == {"cat", "dog", "unlabelled"}
    result = import_bytes(twin, path.read_bytes(), "coco")
    assert result.created == 12
    got = {(n, c, None if label == "unlabelled" else label) for n, c, label in accepted(twin)}
    assert got == accepted(project)
    again = import_bytes(twin, path.read_bytes(), "coco")
    assert again.created == 0 and again.duplicates == 12  # a re-run duplicates nothing


def test_coco_polygons_are_close(filled):
    project, _ = filled
    export = run(project, "coco", options={"coco_polygons": True})
    api = COCO(str(services.download_path(export, "instances.json")))
    for mask in Mask.objects.filter(project=project, status="accepted"):
        ann = api.loadAnns(mask.pk)[0]
        got, want = api.annToMask(ann).astype(bool), decode_rle(mask.segmentation)
        assert (got & want).sum() / (got | want).sum() >= 0.98


def test_label_studio_export_decodes_with_the_sdk_and_imports_back(filled, twin):
    project, _ = filled
    export = run(project, "label_studio", options={"image_url": "/data/local-files/?d=shots/{file_name}"})
    path = services.download_path(export, "tasks.json")
    tasks = json.loads(path.read_bytes())
    assert tasks[0]["data"]["image"] == "/data/local-files/?d=shots/a.png"
    by_id = {m.pk: m for m in Mask.objects.filter(project=project)}
    for task in tasks:
        for result in task["annotations"][0]["result"]:
            mask = by_id[result["meta"]["maskmill"]["mask_id"]]
            h, w = mask.segmentation["size"]
            flat = ls_brush.decode_rle(result["value"]["rle"]).reshape(h, w, 4)[:, :, 3] > 0
            assert np.array_equal(flat, decode_rle(mask.segmentation))
    assert "BrushLabels" in services.download_path(export, "label_config.xml").read_text()
    assert import_bytes(twin, path.read_bytes(), "label_studio").created == 12
    assert accepted(twin) == accepted(project)


def test_sa1b_shards_import_back_and_are_deterministic(filled, users, tmp_path):
    project, _ = filled
    first = run(project, "sa1b", options={"shard_size": 2})
    second = run(project, "sa1b", options={"shard_size": 2})
    folder_a, folder_b = services.export_dir(first), services.export_dir(second)
    assert [f["file"] for f in first.files] == ["sa_000000.tar", "sa_000001.tar", "manifest.json"]
    for entry in first.files:
        assert (folder_a / entry["file"]).read_bytes() == (folder_b / entry["file"]).read_bytes()
    assert first.manifest["shards"][0]["sha256"] == sa1b.file_sha256(folder_a / "sa_000000.tar")
    # Unpack the shards and import them into a new project, images ingested from the folder.
    from annotator.projects.services import create_project

    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    for item in sa1b.iter_dataset(folder_a):
        (unpacked / f"sa_{item.image_id}.jpg").write_bytes(item.image_bytes)
        (unpacked / f"sa_{item.image_id}.json").write_bytes(sa1b.dumps_record(item.record))
    target = create_project(name="From SA-1B", creator=users["manager"])
    outcomes = import_path(target, unpacked, "sa1b")
    assert all(not isinstance(o, ImportRefused) for o in outcomes), outcomes
    assert sum(o.images_ingested for o in outcomes) == 3
    want = {
        (f"sa_{m.image_id}.jpg", m.segmentation["counts"])
        for m in Mask.objects.filter(project=project, status="accepted")
    }
    got = {(m.image.original_name, m.segmentation["counts"]) for m in Mask.objects.filter(project=target)}
    assert got == want
    assert set(Mask.objects.filter(project=target).values_list("source", flat=True)) == {"auto"}


def test_sa1b_shortest_side_resizes_image_and_masks(filled):
    project, _ = filled
    export = run(project, "sa1b", options={"max_side": 30})
    for item in sa1b.iter_dataset(services.export_dir(export)):
        image = item.record["image"]
        assert min(image["width"], image["height"]) == 30
        for ann in item.record["annotations"]:
            assert ann["segmentation"]["size"] == [image["height"], image["width"]]


def test_png_export_has_visible_masks_under_the_overlap_rule(filled):
    project, images = filled
    export = run(project, "png")
    with tarfile.open(services.download_path(export, "png_masks.tar")) as tar:
        names = tar.getnames()
        assert names[0] == "palette.json" and all(m.mtime == 0 for m in tar.getmembers())
        for image in images:
            instance = png.decode_png(tar.extractfile(f"{image.pk}_instances.png").read())
            semantic = png.decode_png(tar.extractfile(f"{image.pk}_semantic.png").read())
            legend = json.loads(tar.extractfile(f"{image.pk}.json").read())
            masks = {m.pk: m for m in Mask.objects.filter(image=image, status="accepted")}
            assert instance.dtype == np.uint16 and semantic.dtype == np.uint8
            painted = np.zeros(instance.shape, bool)
            for row in sorted(legend["instances"], key=lambda r: (r["area"], r["mask_id"])):
                want = decode_rle(masks[row["mask_id"]].segmentation) & ~painted
                assert np.array_equal(instance == row["instance"], want)
                painted |= want


def test_filters_choose_masks_and_images(filled):
    project, _images = filled
    export = run(project, "coco", filter_data={"labels": "dog", "split": ["train"]})
    api = COCO(str(services.download_path(export, "instances.json")))
    assert len(api.getAnnIds()) == 3
    export = run(project, "coco", filter_data={"mask_status": "proposed,accepted", "source": "auto"})
    assert export.masks_done == 3
    export = run(project, "coco", filter_data={"min_predicted_iou": 0.85, "created_after": "2000-01-01"})
    assert export.masks_done == 9
    assert run(project, "coco", filter_data={"split": "val"}).images_total == 0


@pytest.mark.parametrize(
    ("fmt", "data", "message"),
    [
        ("coco", b"{", "not valid JSON"),
        ("coco", json.dumps({"images": [{"id": 1, "file_name": "zzz.png", "width": 80, "height": 60}],
                             "annotations": []}).encode(), "zzz.png: no image"),
        ("coco", json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 6}],
                             "annotations": []}).encode(), "the image is 80x60"),
        ("label_studio", b'[{"data": {}}]', "no image URL"),
        ("sa1b", b'{"image": 1}', "annotations"),
        ("yaml", b"", "format must be"),
    ],
)  # fmt: skip
def test_bad_imports_write_nothing_and_say_why(filled, fmt, data, message):
    project, _ = filled
    before = Mask.objects.count()
    with pytest.raises(ImportRefused, match=message):
        import_bytes(project, data, fmt)
    assert Mask.objects.count() == before


def test_a_file_with_one_bad_record_writes_none_of_its_good_ones(filled, twin):
    project, _ = filled
    export = run(project, "coco")
    doc = json.loads(services.download_path(export, "instances.json").read_bytes())
    doc["annotations"][5]["segmentation"] = {"size": [60, 80], "counts": "broken!"}
    with pytest.raises(ImportRefused, match=f"annotation {doc['annotations'][5]['id']}: segmentation"):
        import_bytes(twin, json.dumps(doc).encode(), "coco")
    assert not Mask.objects.filter(project=twin).exists()
