"""The ``export`` and ``import_annotations`` commands, and imports of real files from ../shared
(the SA-1B sample, Tiny-COCO's polygons and crowd RLE, the panoptic sample's compressed RLE),
Label Studio rectangles through the classic segmenter, and the privacy pass on a real face."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from PIL import Image as PILImage

from annotator.exports.imports import import_bytes, import_path
from annotator.exports.models import Export
from annotator.jobs import JobStatus
from annotator.masks.models import Mask
from engine import sa1b
from engine.masks import decode_rle
from tests.annotator.exports.conftest import SHARED, ingest

pytestmark = pytest.mark.django_db


def shared(*parts: str):
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"../shared/data/{'/'.join(parts)} is absent (shared data not checked out)")
    return path


def test_export_command_writes_in_the_foreground(filled, tmp_path):
    project, _ = filled
    out = io.StringIO()
    call_command(
        "export", project.slug, "--format", "sa1b", "--out", str(tmp_path / "shards"), "--shard-size", "2",
        "--labels", "cat,dog", "--no-progress", stdout=out,
    )  # fmt: skip
    assert "export" in out.getvalue() and "sa_000000.tar" in out.getvalue()
    export = Export.objects.get()
    assert export.status == JobStatus.DONE and export.out_dir == str((tmp_path / "shards").resolve())
    ids = [item.image_id for item in sa1b.iter_dataset(tmp_path / "shards")]
    assert len(ids) == 3
    # Same data, same bytes, even through another export row.
    call_command("export", project.slug, "--format", "sa1b", "--out", str(tmp_path / "again"),
                 "--shard-size", "2", "--labels", "cat,dog", "--no-progress",
                 stdout=io.StringIO())  # fmt: skip
    for name in ("sa_000000.tar", "sa_000001.tar", "manifest.json"):
        assert (tmp_path / "shards" / name).read_bytes() == (tmp_path / "again" / name).read_bytes()


def test_export_command_watches_an_export(filled):
    from annotator.exports import services

    project, _ = filled
    export = services.run_export(services.create_export(project, "png", enqueue=False).pk)
    out = io.StringIO()
    call_command("export", project.slug, "--export", str(export.pk), "--watch", "--no-progress", stdout=out)
    assert "png_masks.tar" in out.getvalue() and "3 images, 12 masks" in out.getvalue()
    with pytest.raises(CommandError, match="nothing to resume"):
        call_command("export", project.slug, "--export", str(export.pk), "--resume", stdout=io.StringIO())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "coco", "--min-stability", "7"], "min_stability"),
        (["--format", "coco", "--shard-size", "3"], "shard_size"),
        (["--export", "999"], "no export 999"),
        ([], "--format is required"),
    ],
)
def test_export_command_refuses_bad_options(filled, args, message):
    project, _ = filled
    with pytest.raises(CommandError, match=message):
        call_command("export", project.slug, *args, stdout=io.StringIO())


def test_real_sa1b_sample_imports(project):
    path = shared("sa1b-sample", "sa_226381.json")
    buffer = io.BytesIO()
    PILImage.new("RGB", (2000, 1500), (90, 90, 90)).save(buffer, format="JPEG")
    image = ingest(project, "sa_226381.jpg", buffer.getvalue())
    out = io.StringIO()
    call_command("import_annotations", project.slug, str(path), "--format", "sa1b", stdout=out)
    assert "113 masks on 1 images" in out.getvalue()
    record = sa1b.read_record(path)
    stored = {m.segmentation["counts"]: m for m in Mask.objects.filter(image=image)}
    for ann in record["annotations"]:
        mask = stored[ann["segmentation"]["counts"]]
        assert mask.area == ann["area"] and mask.source == "auto"
        assert mask.predicted_iou == pytest.approx(ann["predicted_iou"])
    call_command("import_annotations", project.slug, str(path), "--format", "sa1b", stdout=io.StringIO())
    assert Mask.objects.filter(image=image).count() == 113  # again: nothing duplicated


def test_real_coco_samples_import_with_their_images(project):
    tiny = shared("coco-tiny", "small_coco")
    doc = json.loads((tiny / "instances_train2017_small.json").read_bytes())
    outcomes = import_path(
        project, tiny / "instances_train2017_small.json", "coco", images_dir=tiny / "train_2017_small"
    )
    (result,) = outcomes
    assert not isinstance(result, Exception), result
    assert result.images_ingested == 16 and result.created == len(doc["annotations"]) == 197
    crowd = next(a for a in doc["annotations"] if a["iscrowd"])
    image = next(i for i in doc["images"] if i["id"] == crowd["image_id"])
    from pycocotools import mask as mask_utils

    want = mask_utils.decode(mask_utils.frPyObjects(crowd["segmentation"], image["height"], image["width"]))
    assert any(
        np.array_equal(decode_rle(m.segmentation), want.astype(bool))
        for m in Mask.objects.filter(project=project)
    )
    assert set(project.labels.values_list("name", flat=True)) >= {c["name"] for c in doc["categories"] if any(
        a["category_id"] == c["id"] for a in doc["annotations"])}  # fmt: skip

    panoptic = shared("coco-panoptic-sample", "sample_data")
    out = io.StringIO()
    call_command(
        "import_annotations", project.slug, str(panoptic / "panoptic_coco_detection_format.json"),
        "--format", "coco", "--images", str(panoptic / "input_images"), stdout=out,
    )  # fmt: skip
    assert "50 masks on 2 images" in out.getvalue() and "2 images ingested" in out.getvalue()


def test_import_command_reports_refusals(project, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(
        '{"images": [{"id": 1, "file_name": "nowhere.jpg", "width": 5, "height": 5}], "annotations": []}'
    )
    err = io.StringIO()
    with pytest.raises(CommandError, match="1 of 1 file"):
        call_command(
            "import_annotations", project.slug, str(bad), "--format", "coco", stderr=err, stdout=io.StringIO()
        )
    assert "nowhere.jpg: no image of the project has this name" in err.getvalue()


def test_label_studio_rectangles_become_model_made_masks(project):
    pixels = np.full((60, 80, 3), 30, np.uint8)
    pixels[15:45, 20:60] = (230, 40, 40)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG")
    image = ingest(project, "box.png", buffer.getvalue())
    doc = [{"data": {"image": "/data/upload/1/0a1b2c3d-box.png"}, "annotations": [{"result": [
        {"type": "rectanglelabels", "original_width": 80, "original_height": 60,
         "value": {"x": 22.5, "y": 20, "width": 55, "height": 60,
                   "rectanglelabels": ["thing"]}}]}]}]  # fmt: skip
    result = import_bytes(project, json.dumps(doc).encode(), "label_studio")
    assert result.created == 1 and result.labels_created == ["thing"]
    mask = Mask.objects.get(image=image)
    assert (mask.source, mask.status, mask.model_version) == ("auto", "proposed", None)  # classic segmenter
    got = decode_rle(mask.segmentation)
    truth = np.zeros((60, 80), bool)
    truth[15:45, 20:60] = True
    assert (got & truth).sum() / (got | truth).sum() > 0.8


def test_privacy_pass_blurs_a_real_face_and_lists_it(project, filled):
    photo = shared("sample-photos", "astronaut.png")
    target, _ = filled
    image = ingest(target, "astronaut.png", photo.read_bytes())
    from annotator.masks.services import create_mask
    from engine.masks import encode_rle

    mask = np.zeros((image.height, image.width), bool)
    mask[10:100, 10:100] = True
    create_mask(image, segmentation=encode_rle(mask), annotator=None, status="accepted")
    from annotator.exports import services

    export = services.run_export(
        services.create_export(target, "sa1b", options={"blur_faces": True}, enqueue=False).pk
    )
    privacy = json.loads((services.export_dir(export) / "privacy.json").read_bytes())
    assert str(image.pk) in privacy["images"] and privacy["images"][str(image.pk)][0]["kind"] == "face"
    assert export.manifest["privacy"]["blurred_images"] >= 1 and export.manifest["privacy"]["regions"] >= 1
