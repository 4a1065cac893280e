"""A synthetic segmentation set for training from scratch where no photos or weights can be had:
textured shapes (ellipses, rectangles, triangles, stars) on cluttered backgrounds (colour
gradients, noise, lines and many small distractor blobs), with the visible mask of every shape.

Objects differ from the background by their texture and outline, not by one colour, so a model
has to look at the image; distractors and occlusions make clicks near edges matter. Deterministic
for a seed.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from engine.training.config import TrainingSample

SHAPES = ("ellipse", "rectangle", "triangle", "star")


def _color(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, 3).astype(np.float32)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    a, b = _color(rng), _color(rng)
    angle = rng.uniform(0, 2 * math.pi)
    t = (np.cos(angle) * xs + np.sin(angle) * ys + 1) / 2
    image = a * t[..., None] + b * (1 - t[..., None])
    noise = cv2.GaussianBlur(rng.normal(0, 1, (size, size, 3)).astype(np.float32), (0, 0), 2.0)
    image += noise * rng.uniform(10, 35)
    for _ in range(rng.integers(3, 8)):  # lines
        p, q = rng.integers(0, size, 2), rng.integers(0, size, 2)
        cv2.line(
            image,
            tuple(int(v) for v in p),
            tuple(int(v) for v in q),
            _color(rng).tolist(),
            int(rng.integers(1, 3)),
        )
    for _ in range(rng.integers(6, 16)):  # small distractor blobs
        centre = tuple(int(v) for v in rng.integers(0, size, 2))
        axes = tuple(int(v) for v in rng.integers(2, max(3, size // 14), 2))
        cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0, 360, _color(rng).tolist(), -1)
    return image


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    a, b = _color(rng), _color(rng)
    while np.abs(a - b).sum() < 150:
        b = _color(rng)
    kind = rng.integers(0, 3)
    period = rng.uniform(4, 10)
    if kind == 0:  # stripes
        angle = rng.uniform(0, math.pi)
        t = (np.sin((np.cos(angle) * xs + np.sin(angle) * ys) * 2 * math.pi / period) > 0).astype(np.float32)
    elif kind == 1:  # checkerboard
        t = ((np.floor(xs / period) + np.floor(ys / period)) % 2).astype(np.float32)
    else:  # dots
        t = ((np.sin(xs * 2 * math.pi / period) * np.sin(ys * 2 * math.pi / period)) > 0.3).astype(np.float32)
    return a * t[..., None] + b * (1 - t[..., None])


def _shape_mask(rng: np.random.Generator, size: int, radius_range: tuple[float, float]) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    radius = rng.uniform(radius_range[0], radius_range[1]) * size
    cx, cy = rng.uniform(radius * 0.6, size - radius * 0.6, 2)
    kind = SHAPES[rng.integers(0, len(SHAPES))]
    angle = rng.uniform(0, 2 * math.pi)
    if kind == "ellipse":
        axes = (int(radius), int(radius * rng.uniform(0.45, 1.0)))
        cv2.ellipse(mask, (int(cx), int(cy)), axes, math.degrees(angle), 0, 360, 1, -1)
    else:
        if kind == "rectangle":
            ratio = rng.uniform(0.4, 1.0)
            corners = [(1, ratio), (-1, ratio), (-1, -ratio), (1, -ratio)]
            points = [(x * radius * 0.8, y * radius * 0.8) for x, y in corners]
        elif kind == "triangle":
            points = [
                (radius * math.cos(k * 2 * math.pi / 3), radius * math.sin(k * 2 * math.pi / 3))
                for k in range(3)
            ]
        else:
            points = [
                (
                    (radius if k % 2 == 0 else radius * 0.45) * math.cos(k * math.pi / 5),
                    (radius if k % 2 == 0 else radius * 0.45) * math.sin(k * math.pi / 5),
                )
                for k in range(10)
            ]
        c, s = math.cos(angle), math.sin(angle)
        rotated = np.array([(cx + x * c - y * s, cy + x * s + y * c) for x, y in points], np.int32)
        cv2.fillPoly(mask, [rotated], 1)
    return mask.astype(bool)


def make_scene(
    rng: np.random.Generator,
    size: int = 128,
    objects: tuple[int, int] = (1, 3),
    radius: tuple[float, float] = (0.12, 0.3),
) -> tuple[np.ndarray, list[np.ndarray]]:
    """One (size, size, 3) uint8 image and the visible masks of its shapes (occlusion applied;
    shapes left with under 2 % of the image are dropped)."""
    image = _background(rng, size)
    masks: list[np.ndarray] = []
    for _ in range(int(rng.integers(objects[0], objects[1] + 1))):
        mask = _shape_mask(rng, size, radius)
        texture = _texture(rng, size)
        shade = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 3) * 12
        image[mask] = texture[mask] + shade[mask][:, None]
        masks = [m & ~mask for m in masks]
        masks.append(mask)
    image = np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)
    return image, [m for m in masks if m.sum() >= 0.02 * size * size]


def make_samples(
    images: int,
    seed: int = 0,
    size: int = 128,
    prefix: str = "scene",
    objects: tuple[int, int] = (1, 3),
    radius: tuple[float, float] = (0.12, 0.3),
) -> list[TrainingSample]:
    """Samples of ``images`` scenes with ``objects`` shapes each, of ``radius`` (fractions of the
    side); objects of one scene share its image."""
    rng = np.random.default_rng(seed)
    samples = []
    for index in range(images):
        image, masks = make_scene(rng, size, objects, radius)
        key = f"{prefix}{seed}_{index:05d}"
        for number, mask in enumerate(masks):
            samples.append(TrainingSample(mask=mask, image=image, name=f"{key}_{number}", image_key=key))
    return samples


def write_click_folder(samples: list[TrainingSample], root: str | os.PathLike) -> Path:
    """Write samples as a click-evaluation folder: ``img/<name>.jpg`` + ``gt/<name>.png``."""
    root = Path(root)
    (root / "img").mkdir(parents=True, exist_ok=True)
    (root / "gt").mkdir(parents=True, exist_ok=True)
    for sample in samples:
        Image.fromarray(sample.image).save(root / "img" / f"{sample.name}.jpg", quality=95)
        Image.fromarray(sample.mask.astype(np.uint8) * 255).save(root / "gt" / f"{sample.name}.png")
    return root
