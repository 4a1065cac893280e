"""Synthetic labelled masks with known classes, for the label head's tests and benchmark.

Four classes that differ the way real categories do, each in more than one cue: colour family,
texture and outline. Backgrounds are cluttered noise so the ring around a mask carries no label.
"""

from __future__ import annotations

import cv2
import numpy as np

NAMES = {1: "tomato", 2: "leaf", 3: "sky", 4: "brick"}


def _draw(canvas: np.ndarray, label: int, rng: np.random.Generator) -> np.ndarray:
    h, w = canvas.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    cx, cy = int(rng.integers(w // 5, 4 * w // 5)), int(rng.integers(h // 5, 4 * h // 5))
    size = int(rng.integers(min(h, w) // 10, min(h, w) // 5))
    if label == 1:  # round, red
        cv2.circle(mask, (cx, cy), size, 1, -1)
        colour = (200 + rng.integers(0, 50), rng.integers(0, 60), rng.integers(0, 50))
    elif label == 2:  # elongated ellipse, green
        cv2.ellipse(mask, (cx, cy), (size, size // 3 + 1), float(rng.uniform(0, 180)), 0, 360, 1, -1)
        colour = (rng.integers(20, 80), 140 + rng.integers(0, 80), rng.integers(20, 80))
    elif label == 3:  # wide band, light blue, smooth
        cv2.rectangle(
            mask, (max(cx - 2 * size, 0), cy - size // 2), (min(cx + 2 * size, w - 1), cy + size // 2), 1, -1
        )
        colour = (120 + rng.integers(0, 40), 170 + rng.integers(0, 40), 220 + rng.integers(0, 35))
    else:  # square, orange-brown with a stripe texture
        cv2.rectangle(mask, (cx - size, cy - size), (cx + size, cy + size), 1, -1)
        colour = (150 + rng.integers(0, 50), 70 + rng.integers(0, 40), 30 + rng.integers(0, 30))
    region = mask.astype(bool)
    fill = np.empty((h, w, 3), np.float32)
    fill[:] = colour
    if label == 4:
        stripes = ((np.arange(h)[:, None] // 4) % 2 == 0).astype(np.float32)
        fill *= (0.7 + 0.3 * stripes)[..., None]
    fill += rng.normal(0, 6, fill.shape)
    canvas[region] = np.clip(fill[region], 0, 255).astype(np.uint8)
    return region


def synthetic_scene_masks(n_images: int, seed: int, size: tuple[int, int] = (160, 200)) -> list:
    """(image, mask, label) triples: each image holds one object of every class on clutter."""
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n_images):
        canvas = rng.integers(40, 200, (*size, 3), dtype=np.uint8)
        canvas = cv2.GaussianBlur(canvas, (7, 7), 0)
        for label in rng.permutation(list(NAMES)):
            region = _draw(canvas, int(label), rng)
            samples.append((canvas, region, int(label)))
        # Masks were drawn in order; later objects may cover earlier ones: keep what stays visible.
        samples = samples[: len(samples) - len(NAMES)] + _visible(samples[-len(NAMES) :])
    return [s for s in samples if s[1].sum() > 20]


def _visible(drawn: list) -> list:
    covered = np.zeros_like(drawn[0][1])
    visible = []
    for image, region, label in reversed(drawn):
        visible.append((image, region & ~covered, label))
        covered |= region
    return list(reversed(visible))


def synthetic_embedding_masks(n: int, seed: int, channels: int = 32) -> tuple[np.ndarray, list[int]]:
    """Embedding-style features: each class has a prototype direction in the pooled embedding, seen
    through noise, plus a random shape block (the shape block carries no class here)."""
    rng = np.random.default_rng(1234)
    prototypes = rng.normal(size=(len(NAMES), channels))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(NAMES), n)
    inside = prototypes[labels] + rng.normal(0, 1.2, (n, channels))
    ring = rng.normal(size=(n, channels))
    shape = rng.normal(0, 0.3, (n, 7))
    features = np.concatenate([inside, ring, shape], axis=1).astype(np.float32)
    return features, [int(list(NAMES)[i]) for i in labels]
