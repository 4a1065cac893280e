"""engine.sa1b: the real SA-1B file loads; our records and shards have its schema; shards are
deterministic, resumable, and bad input is refused with a reason."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from engine.masks import decode_rle, encode_rle, rle_to_bbox
from engine.sa1b import (
    ANNOTATION_KEYS,
    SA1BFormatError,
    SA1BImage,
    completed_image_ids,
    iter_dataset,
    iter_shard,
    loads_record,
    make_record,
    placeholder,
    read_manifest,
    read_record,
    write_shards,
)

SAMPLE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "sa1b-sample" / "sa_226381.json"
if not SAMPLE.is_file():
    SAMPLE = Path("/work/shared/data/sa1b-sample/sa_226381.json")


@pytest.fixture(scope="module")
def sample():
    if not SAMPLE.is_file():
        pytest.skip("the real SA-1B sample (../shared/data/sa1b-sample/sa_226381.json) is not available")
    return read_record(SAMPLE)


def test_real_file_loads_and_every_mask_matches_its_area_and_bbox(sample):
    assert sample["image"] == {
        "image_id": 226381,
        "width": 2000,
        "height": 1500,
        "file_name": "sa_226381.jpg",
    }
    assert len(sample["annotations"]) == 113
    for ann in sample["annotations"]:
        mask = decode_rle(ann["segmentation"])
        assert mask.shape == (1500, 2000)
        assert int(mask.sum()) == ann["area"]
        ys, xs = np.nonzero(mask)
        # SA-1B's convention, checked on the real file: width = x_max - x_min (no +1).
        expected = [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()]
        assert ann["bbox"] == pytest.approx(expected)
        assert rle_to_bbox(ann["segmentation"]) == pytest.approx(ann["bbox"])


def generated_annotations(height=60, width=80, count=3, seed=0):
    rng = np.random.default_rng(seed)
    anns = []
    for i in range(count):
        mask = np.zeros((height, width), bool)
        x, y = int(rng.integers(0, width - 20)), int(rng.integers(0, height - 20))
        mask[y : y + 10 + i, x : x + 15] = True
        rle = encode_rle(mask)
        anns.append(
            {
                "segmentation": rle,
                "area": int(mask.sum()),
                "bbox": rle_to_bbox(rle),
                "predicted_iou": 0.9 + i / 100,
                "point_coords": [[x + 5.5, y + 5]],
                "stability_score": 0.97,
                "crop_box": [0, 0, width, height],
            }
        )
    return anns


def test_written_record_has_the_real_schema(sample):
    record = make_record(7, 80, 60, generated_annotations())
    real = sample["annotations"][0]
    assert list(record) == list(sample)
    assert list(record["image"]) == list(sample["image"])
    for ann in record["annotations"]:
        assert tuple(ann) == ANNOTATION_KEYS
        assert set(ann) == set(real)
        for key in ANNOTATION_KEYS:
            assert type(ann[key]) is type(real[key]), key
        assert all(type(v) is float for v in ann["bbox"] + ann["crop_box"] + ann["point_coords"][0])
        assert set(ann["segmentation"]) == {"size", "counts"} and isinstance(
            ann["segmentation"]["counts"], str
        )
        mask = decode_rle(ann["segmentation"])
        ys, xs = np.nonzero(mask)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()]
    assert [a["id"] for a in record["annotations"]] == [0, 1, 2]
    assert loads_record(json.dumps(record)) == record


def dataset(n=5, size=(60, 80)):
    for image_id in range(10, 10 + n):
        yield SA1BImage(image_id, f"jpeg-bytes-{image_id}".encode(), make_record(image_id, size[1], size[0],
                        generated_annotations(seed=image_id)))  # fmt: skip


def test_shards_are_deterministic_and_read_back(tmp_path):
    first = write_shards(dataset(), tmp_path / "a", images_per_shard=2)
    second = write_shards(dataset(), tmp_path / "b", images_per_shard=2)
    assert [e["file"] for e in first] == ["sa_000000.tar", "sa_000001.tar", "sa_000002.tar"]
    assert first == second
    for entry in first:
        data = (tmp_path / "a" / entry["file"]).read_bytes()
        assert data == (tmp_path / "b" / entry["file"]).read_bytes()
        assert entry["bytes"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert read_manifest(tmp_path / "a" / "manifest.json") == first
    with tarfile.open(tmp_path / "a" / "sa_000000.tar") as tar:
        assert tar.getnames() == ["sa_10.jpg", "sa_10.json", "sa_11.jpg", "sa_11.json"]
        assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in tar.getmembers())
    items = list(iter_dataset(tmp_path / "a"))
    assert [i.image_id for i in items] == [10, 11, 12, 13, 14]
    assert items == list(dataset())


def test_resume_keeps_complete_shards_and_rewrites_damaged_ones(tmp_path):
    out = tmp_path / "out"
    manifest = write_shards(dataset(), out, images_per_shard=2)
    first, second = out / manifest[0]["file"], out / manifest[1]["file"]
    first_stat = first.stat().st_mtime_ns
    second.write_bytes(b"damaged")
    again = write_shards(dataset(), out, images_per_shard=2)
    assert again == manifest
    assert first.stat().st_mtime_ns == first_stat  # verified by sha256 and skipped
    assert hashlib.sha256(second.read_bytes()).hexdigest() == manifest[1]["sha256"]  # rewritten
    with pytest.raises(ValueError, match="other images"):
        write_shards(dataset(n=3), out, images_per_shard=1)


def test_a_run_interrupted_mid_shard_resumes_after_its_last_complete_shard(tmp_path):
    complete = tmp_path / "complete"
    reference = write_shards(dataset(), complete, images_per_shard=2)

    def dies_in_shard_two():
        for number, item in enumerate(dataset()):
            if number == 3:
                raise KeyboardInterrupt("killed")
            yield item

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        write_shards(dies_in_shard_two(), out, images_per_shard=2)
    assert [entry["shard"] for entry in read_manifest(out / "manifest.json")] == [0]
    done = completed_image_ids(out)
    assert done == {10, 11}
    first = (out / reference[0]["file"]).stat().st_mtime_ns
    items = (placeholder(i.image_id) if i.image_id in done else i for i in dataset())
    assert write_shards(items, out, images_per_shard=2) == reference
    assert (out / reference[0]["file"]).stat().st_mtime_ns == first
    for entry in reference:
        assert (out / entry["file"]).read_bytes() == (complete / entry["file"]).read_bytes()
    assert (out / "manifest.json").read_bytes() == (complete / "manifest.json").read_bytes()
    assert not list(out.glob("*.partial"))


def test_writer_refuses_unordered_or_invalid_input(tmp_path):
    items = list(dataset(n=2))
    with pytest.raises(ValueError, match="increasing image_id"):
        write_shards(reversed(items), tmp_path / "x")
    bad = generated_annotations()
    bad[0]["segmentation"] = encode_rle(np.zeros((10, 10), bool))
    with pytest.raises(ValueError, match="does not match the image size"):
        make_record(1, 80, 60, bad)
    empty = generated_annotations()
    empty[1]["stability_score"] = float("nan")
    with pytest.raises(ValueError, match="annotation 1: stability_score is nan"):
        make_record(1, 80, 60, empty)


def tar_with(tmp_path: Path, members: dict[str, bytes]) -> Path:
    path = tmp_path / "bad.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_reader_errors_say_what_is_wrong(tmp_path, sample):
    good = json.dumps(make_record(3, 80, 60, generated_annotations())).encode()
    with pytest.raises(SA1BFormatError, match="not valid JSON"):
        loads_record(b"{oops")
    missing = json.loads(good)
    del missing["annotations"][1]["predicted_iou"]
    with pytest.raises(SA1BFormatError, match=r"annotation 1 is missing \['predicted_iou'\]"):
        loads_record(json.dumps(missing))
    wrong_size = json.loads(good)
    wrong_size["image"]["height"] = 61
    with pytest.raises(SA1BFormatError, match="does not match the image size"):
        loads_record(json.dumps(wrong_size))
    wrong_counts = json.loads(good)
    wrong_counts["annotations"][0]["segmentation"]["counts"] += "1"
    with pytest.raises(SA1BFormatError, match="segmentation"):
        loads_record(json.dumps(wrong_counts))
    for name in ("../sa_3.json", "/etc/sa_3.json", "dir/../../sa_3.json"):
        with pytest.raises(SA1BFormatError, match="unsafe member name"):
            list(iter_shard(tar_with(tmp_path, {name: good})))
    with pytest.raises(SA1BFormatError, match="without their pair"):
        list(iter_shard(tar_with(tmp_path, {"sa_3.json": good})))
    with pytest.raises(SA1BFormatError, match="not a tar"):
        (tmp_path / "x.tar").write_bytes(b"not a tar at all" * 100)
        list(iter_shard(tmp_path / "x.tar"))
    ok = tar_with(tmp_path, {"sa_3.jpg": b"jpeg", "sa_3.json": good})
    assert [i.image_id for i in iter_shard(ok)] == [3]
    with pytest.raises(SA1BFormatError, match="sha256"):
        list(iter_shard(ok, verify_sha256="0" * 64))
