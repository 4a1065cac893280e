"""SA-1B records and shards: the per-image JSON of the SA-1B release and ``sa_NNNNNN.tar`` shards
of ``sa_<image_id>.jpg`` + ``sa_<image_id>.json`` pairs, with a manifest (shard, file, bytes,
sha256).

The writer is deterministic (same records and image bytes → same shard bytes: sorted by image id,
fixed tar mtime/uid/gid/mode/owner names, PAX-free USTAR headers, canonical JSON), streaming (one
image in memory at a time; shards are written through a temporary file and renamed when complete)
and resumable (a shard that already exists with the manifest's sha256 is kept, not rewritten).
The reader checks what it loads and says what is wrong.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from engine.masks import validate_rle

MANIFEST_NAME = "manifest.json"
# Key order of the real SA-1B files (see tests: sa_226381.json).
ANNOTATION_KEYS = (
    "bbox",
    "area",
    "segmentation",
    "predicted_iou",
    "point_coords",
    "crop_box",
    "id",
    "stability_score",
)
IMAGE_KEYS = ("image_id", "width", "height", "file_name")


class SA1BFormatError(ValueError):
    """A file that is not valid SA-1B; the message says which file and what is wrong."""


@dataclass(frozen=True)
class SA1BImage:
    """One image of a shard: its id, encoded image bytes (JPEG) and SA-1B record."""

    image_id: int
    image_bytes: bytes
    record: dict[str, Any]


# --- records -------------------------------------------------------------------------------------


def make_record(
    image_id: int,
    width: int,
    height: int,
    annotations: Iterable[dict[str, Any]],
    first_annotation_id: int = 0,
) -> dict[str, Any]:
    """SA-1B record from generator-style annotations (``segmentation`` COCO RLE, ``bbox``, ``area``,
    ``predicted_iou``, ``stability_score``, ``point_coords``, ``crop_box``; ``id`` optional).
    Numbers get SA-1B's types: floats for boxes, scores and points, int for area and ids."""
    out = []
    for offset, ann in enumerate(annotations):
        segmentation = validate_rle(ann["segmentation"], height, width)
        for key in ("predicted_iou", "stability_score"):
            if not math.isfinite(float(ann[key])):
                raise ValueError(
                    f"annotation {offset}: {key} is {ann[key]} (JSON has no NaN/inf; an empty mask has a NaN "
                    "stability score: leave empty masks out)"
                )
        out.append(
            {
                "bbox": [float(v) for v in ann["bbox"]],
                "area": int(ann["area"]),
                "segmentation": segmentation,
                "predicted_iou": float(ann["predicted_iou"]),
                "point_coords": [[float(x), float(y)] for x, y in ann["point_coords"]],
                "crop_box": [float(v) for v in ann["crop_box"]],
                "id": int(ann.get("id", first_annotation_id + offset)),
                "stability_score": float(ann["stability_score"]),
            }
        )
    record = {
        "image": {"image_id": int(image_id), "width": int(width), "height": int(height)},
        "annotations": out,
    }
    record["image"]["file_name"] = image_file_name(image_id)
    return validate_record(record)


def image_file_name(image_id: int) -> str:
    return f"sa_{int(image_id)}.jpg"


def dumps_record(record: dict[str, Any]) -> bytes:
    """Canonical JSON bytes of a record (compact, key order as SA-1B, UTF-8)."""
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def loads_record(data: bytes | str, source: str = "<record>") -> dict[str, Any]:
    """Parse and validate an SA-1B JSON record."""
    try:
        record = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SA1BFormatError(f"{source}: not valid JSON ({exc})") from exc
    return validate_record(record, source)


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """Load one SA-1B per-image JSON file."""
    return loads_record(Path(path).read_bytes(), str(path))


def validate_record(record: Any, source: str = "<record>") -> dict[str, Any]:
    """Check the SA-1B schema: keys, types, RLE sizes matching the image."""

    def fail(what: str) -> None:
        raise SA1BFormatError(f"{source}: {what}")

    if not isinstance(record, dict) or not {"image", "annotations"} <= set(record):
        fail('expected an object with "image" and "annotations"')
    image = record["image"]
    if not isinstance(image, dict):
        fail('"image" must be an object')
    missing = [key for key in IMAGE_KEYS if key not in image]
    if missing:
        fail(f'"image" is missing {missing}')
    for key in ("image_id", "width", "height"):
        if not _is_int(image[key]) or image[key] < (0 if key == "image_id" else 1):
            fail(f'"image.{key}" must be a {"non-negative" if key == "image_id" else "positive"} integer')
    if not isinstance(image["file_name"], str) or not image["file_name"]:
        fail('"image.file_name" must be a non-empty string')
    height, width = image["height"], image["width"]
    annotations = record["annotations"]
    if not isinstance(annotations, list):
        fail('"annotations" must be a list')
    for index, ann in enumerate(annotations):
        where = f"annotation {index}"
        if not isinstance(ann, dict):
            fail(f"{where} must be an object")
        missing = [key for key in ANNOTATION_KEYS if key not in ann]
        if missing:
            fail(f"{where} is missing {missing}")
        try:
            validate_rle(ann["segmentation"], height, width)
        except ValueError as exc:
            fail(f"{where}: segmentation: {exc}")
        for key in ("bbox", "crop_box"):
            value = ann[key]
            if not isinstance(value, list) or len(value) != 4 or not all(_is_number(v) for v in value):
                fail(f"{where}: {key} must be [x, y, w, h] numbers")
        if not _is_int(ann["area"]) or ann["area"] < 0:
            fail(f"{where}: area must be a non-negative integer")
        if not _is_int(ann["id"]):
            fail(f"{where}: id must be an integer")
        for key in ("predicted_iou", "stability_score"):
            if not _is_number(ann[key]):
                fail(f"{where}: {key} must be a number")
        points = ann["point_coords"]
        if not isinstance(points, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(_is_number(v) for v in p) for p in points
        ):
            fail(f"{where}: point_coords must be a list of [x, y]")
    return record


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --- shards --------------------------------------------------------------------------------------


def shard_name(index: int) -> str:
    return f"sa_{index:06d}.tar"


def write_shards(
    images: Iterable[SA1BImage], out_dir: str | os.PathLike, images_per_shard: int = 1000
) -> list[dict[str, Any]]:
    """Write images (which must come in increasing image-id order, so the output does not depend
    on how the caller gathered them and nothing has to be held to sort) into shards of
    ``images_per_shard`` under ``out_dir``, and ``manifest.json`` listing, per shard: shard,
    file, bytes, sha256, images. Each image goes into the open tar as it arrives, so memory does
    not grow with the dataset.

    Resuming: a shard listed in an existing manifest whose file still has that sha256 is not
    rewritten; its images are consumed from ``images`` and must be the same ids. The returned
    manifest is also what is on disk."""
    if images_per_shard < 1:
        raise ValueError(f"images_per_shard must be at least 1, got {images_per_shard}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    previous = {entry["shard"]: entry for entry in _read_manifest_if_any(out)}
    manifest: list[dict[str, Any]] = []
    last_id: int | None = None
    shard: _ShardWriter | None = None
    for item in images:
        if last_id is not None and item.image_id <= last_id:
            raise ValueError(
                f"images must come in increasing image_id order: {item.image_id} after {last_id}"
            )
        last_id = item.image_id
        if item.record["image"]["image_id"] != item.image_id:
            raise ValueError(f"record image_id {item.record['image']['image_id']} != {item.image_id}")
        if shard is None:
            index = len(manifest)
            shard = _ShardWriter(out, index, previous.get(index))
        shard.add(item)
        if shard.count == images_per_shard:
            manifest.append(shard.close())
            shard = None
            # Written after every shard, so a process killed later resumes after this one; the
            # entries of an earlier run beyond it stay listed until they are checked.
            later = [previous[i] for i in sorted(previous) if i >= len(manifest)]
            _write_manifest(out, manifest + later)
    if shard is not None:
        manifest.append(shard.close())
    _write_manifest(out, manifest)
    for stale in sorted(set(previous) - {entry["shard"] for entry in manifest}):
        (out / previous[stale]["file"]).unlink(missing_ok=True)
    return manifest


class _ShardWriter:
    """One shard being written (to ``.partial``, renamed when complete) or, when an identical
    complete shard is already on disk, being skipped."""

    def __init__(self, out: Path, index: int, done: dict[str, Any] | None) -> None:
        self.path = out / shard_name(index)
        self.index = index
        self.ids: list[int] = []
        self.done = done if done and self.path.is_file() and _sha256(self.path) == done["sha256"] else None
        self.tmp = self.path.with_name(self.path.name + ".partial")
        self.tar = None
        if self.done is None:
            self.raw = open(self.tmp, "wb")  # noqa: SIM115 - closed in close()
            self.tar = tarfile.open(fileobj=self.raw, mode="w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115

    @property
    def count(self) -> int:
        return len(self.ids)

    def add(self, item: SA1BImage) -> None:
        if self.done is not None:
            expected = self.done.get("images", [])
            if self.count >= len(expected) or expected[self.count] != item.image_id:
                raise ValueError(
                    f"{self.path} is already complete with other images; remove the output folder "
                    "(or the shard and manifest) to write this dataset"
                )
        else:
            stem = f"sa_{item.image_id}"
            _add_file(self.tar, f"{stem}.jpg", item.image_bytes)
            _add_file(self.tar, f"{stem}.json", dumps_record(validate_record(item.record, stem)))
        self.ids.append(item.image_id)

    def close(self) -> dict[str, Any]:
        if self.done is not None:
            if self.ids != self.done.get("images"):
                raise ValueError(f"{self.path} is complete with other images than this dataset's")
            return self.done
        self.tar.close()
        self.raw.close()
        os.replace(self.tmp, self.path)
        return {
            "shard": self.index,
            "file": self.path.name,
            "bytes": self.path.stat().st_size,
            "sha256": _sha256(self.path),
            "images": self.ids,
        }


def _add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_manifest(out: Path, shards: list[dict[str, Any]]) -> None:
    _write_atomic(out / MANIFEST_NAME, json.dumps({"shards": shards}, indent=1, sort_keys=True).encode())


def completed_image_ids(out_dir: str | os.PathLike) -> set[int]:
    """Ids of the images in the shards of an earlier run that are complete on disk (sha256 as
    listed): a caller resuming can pass ``placeholder(id)`` for them instead of loading pixels."""
    out = Path(out_dir)
    done: set[int] = set()
    for entry in _read_manifest_if_any(out):
        path = out / str(entry["file"])
        if path.name == entry["file"] and path.is_file() and _sha256(path) == entry["sha256"]:
            done.update(entry.get("images", []))
    return done


def placeholder(image_id: int) -> SA1BImage:
    """Stands for an image of a shard that is already complete: only its id is looked at."""
    return SA1BImage(int(image_id), b"", {"image": {"image_id": int(image_id)}, "annotations": []})


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _read_manifest_if_any(out: Path) -> list[dict[str, Any]]:
    path = out / MANIFEST_NAME
    if not path.is_file():
        return []
    return read_manifest(path)


def read_manifest(path: str | os.PathLike) -> list[dict[str, Any]]:
    try:
        data = json.loads(Path(path).read_bytes())
        shards = data["shards"]
        for entry in shards:
            missing = [key for key in ("shard", "file", "bytes", "sha256") if key not in entry]
            if missing:
                raise KeyError(f"a shard entry lacks {missing}")
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise SA1BFormatError(f"{path}: not a valid shard manifest ({exc!r})") from exc
    return shards


def iter_shard(path: str | os.PathLike, verify_sha256: str | None = None) -> Iterator[SA1BImage]:
    """Images of one shard, in file order, validated. Refuses member names that could escape a
    directory when extracted (absolute, ``..``), non-file members, and unpaired files."""
    path = Path(path)
    if verify_sha256 is not None and _sha256(path) != verify_sha256:
        raise SA1BFormatError(f"{path}: sha256 does not match the manifest")
    try:
        tar = tarfile.open(path, mode="r:")  # noqa: SIM115 - closed by the with below
    except tarfile.TarError as exc:
        raise SA1BFormatError(f"{path}: not a tar file ({exc})") from exc
    with tar:
        pending: dict[str, bytes] = {}
        for member in tar:
            name = member.name
            pure = PurePosixPath(name)
            if pure.is_absolute() or ".." in pure.parts or "\\" in name or name.startswith("/"):
                raise SA1BFormatError(f"{path}: unsafe member name {name!r}")
            if not member.isfile():
                raise SA1BFormatError(f"{path}: member {name!r} is not a regular file")
            if len(pure.parts) != 1 or not name.startswith("sa_") or pure.suffix not in (".jpg", ".json"):
                raise SA1BFormatError(f"{path}: unexpected member {name!r} (expected sa_<id>.jpg / .json)")
            data = tar.extractfile(member).read()
            stem = pure.stem
            if stem in pending:
                other = pending.pop(stem)
                jpg, js = (data, other) if pure.suffix == ".jpg" else (other, data)
                yield _shard_item(path, stem, jpg, js)
            else:
                pending[stem] = data
        if pending:
            raise SA1BFormatError(f"{path}: files without their pair: {sorted(pending)}")


def _shard_item(path: Path, stem: str, jpg: bytes, js: bytes) -> SA1BImage:
    try:
        image_id = int(stem[3:])
    except ValueError:
        raise SA1BFormatError(f"{path}: member name {stem!r} has no numeric image id") from None
    record = loads_record(js, f"{path}:{stem}.json")
    if record["image"]["image_id"] != image_id:
        raise SA1BFormatError(f"{path}: {stem}.json says image_id {record['image']['image_id']}")
    return SA1BImage(image_id, jpg, record)


def iter_dataset(out_dir: str | os.PathLike, verify: bool = True) -> Iterator[SA1BImage]:
    """All images of a written dataset, shard by shard, checking each shard's sha256."""
    out = Path(out_dir)
    for entry in read_manifest(out / MANIFEST_NAME):
        file_name = entry["file"]
        if PurePosixPath(file_name).name != file_name:
            raise SA1BFormatError(f"{out / MANIFEST_NAME}: unsafe shard file name {file_name!r}")
        yield from iter_shard(out / file_name, entry["sha256"] if verify else None)


# Public names for the helpers other writers share (a deterministic tar member, a file's digest).
add_tar_member = _add_file
file_sha256 = _sha256
