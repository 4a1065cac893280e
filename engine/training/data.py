"""Training samples from disk: a click-evaluation folder (``img/*.jpg`` + ``gt/*.png``, one
object per mask file, as ``engine.evaluation`` reads it) or SA-1B shards written by
``engine.sa1b`` (so an export can be trained on). Objects of one image share one image array
(and so one embedding in decoder mode)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from engine.evaluation import load_click_dataset
from engine.images import ImageReadError, read_image
from engine.masks import decode_rle
from engine.sa1b import MANIFEST_NAME, SA1BFormatError, iter_dataset
from engine.training.config import TrainingError, TrainingSample


def load_click_folder(root: str | os.PathLike, limit: int | None = None) -> list[TrainingSample]:
    """One sample per ``gt/*.png``; files of the same image content share one array."""
    try:
        instances = load_click_dataset(Path(root), limit)
    except ValueError as exc:
        raise TrainingError(str(exc)) from exc
    samples, images = [], {}
    for instance in instances:
        try:
            image, gt = instance.load()
        except (ValueError, OSError) as exc:
            raise TrainingError(f"{instance.name}: {exc}") from exc
        key = hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()
        image = images.setdefault(key, image)
        samples.append(TrainingSample(mask=gt, image=image, name=instance.name, image_key=key))
    return samples


def load_sa1b(
    root: str | os.PathLike,
    limit: int | None = None,
    max_per_image: int | None = None,
    min_area: int = 1,
) -> list[TrainingSample]:
    """One sample per annotation of the shards in ``root`` (largest first within an image, at
    most ``max_per_image``; smaller than ``min_area`` pixels skipped), at most ``limit`` in all."""
    samples: list[TrainingSample] = []
    try:
        for item in iter_dataset(root):
            try:
                image = read_image(item.image_bytes)
            except ImageReadError as exc:
                raise TrainingError(f"image {item.image_id}: {exc}") from exc
            annotations = sorted(item.record["annotations"], key=lambda a: -a["area"])
            kept = 0
            for annotation in annotations:
                if annotation["area"] < min_area:
                    continue
                mask = decode_rle(annotation["segmentation"])
                if mask.shape != image.shape[:2]:
                    raise TrainingError(
                        f"image {item.image_id}: mask {annotation['id']} is {mask.shape}, "
                        f"image {image.shape[:2]}"
                    )
                name = f"sa_{item.image_id}_{annotation['id']}"
                samples.append(
                    TrainingSample(mask=mask, image=image, name=name, image_key=f"sa_{item.image_id}")
                )
                kept += 1
                if limit is not None and len(samples) >= limit:
                    return samples
                if max_per_image is not None and kept >= max_per_image:
                    break
    except SA1BFormatError as exc:
        raise TrainingError(str(exc)) from exc
    return samples


def load_samples(root: str | os.PathLike, limit: int | None = None) -> list[TrainingSample]:
    """Samples of a click-evaluation folder or of SA-1B shards, whichever ``root`` holds."""
    path = Path(root)
    if not path.is_dir():
        raise TrainingError(f"{path}: not a folder")
    if (path / "img").is_dir() and (path / "gt").is_dir():
        return load_click_folder(path, limit)
    if (path / MANIFEST_NAME).is_file() or any(path.glob("sa_*.tar")):
        return load_sa1b(path, limit)
    raise TrainingError(
        f"{path} holds neither img/ + gt/ (a click-evaluation folder) "
        "nor SA-1B shards (manifest.json, sa_*.tar)"
    )
