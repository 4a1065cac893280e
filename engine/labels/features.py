"""Per-mask feature vectors for the label head.

Two feature sets, one per kind of model: SAM-family models pool the stored image embedding inside the
mask and in a ring around it (the embedding already knows what the pixels are; the ring says what the
object sits on), the classic segmenter (no embedding) describes colour, texture and shape from the
pixels. Both end with the same shape block, so a mask's outline counts in either.
"""

from __future__ import annotations

import cv2
import numpy as np

SHAPE_FEATURES = 7
COLOUR_BINS = 8
ORIENTATION_BINS = 8
# Longest side of the crop the classic features are computed on: enough for colour and texture
# statistics, and bounded so a huge mask costs the same as a small one.
CLASSIC_CROP = 96


def shape_features(mask: np.ndarray) -> np.ndarray:
    """Size, elongation, fill and position of a binary (H, W) mask, each roughly in [-1, 1]."""
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return np.zeros(SHAPE_FEATURES, np.float32)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    bw, bh = x1 - x0, y1 - y0
    area = xs.size
    return np.array(
        [
            np.log(area / (h * w)) / 10.0,  # log area fraction: -1 for a speck, 0 for the whole image
            np.log(bw / bh) / 3.0,  # aspect ratio
            area / (bw * bh),  # how much of its box the mask fills
            xs.mean() / w - 0.5,
            ys.mean() / h - 0.5,
            bw / w,
            bh / h,
        ],
        dtype=np.float32,
    )


def _cell_weights(
    mask: np.ndarray, input_size: tuple[int, int], grid: tuple[int, int], img_size: int
) -> np.ndarray:
    """Fraction of each embedding cell the mask covers, in the model's padded square frame."""
    resized = cv2.resize(
        mask.astype(np.float32), (input_size[1], input_size[0]), interpolation=cv2.INTER_AREA
    )
    frame = np.zeros((img_size, img_size), np.float32)
    frame[: input_size[0], : input_size[1]] = resized
    return cv2.resize(frame, (grid[1], grid[0]), interpolation=cv2.INTER_AREA)


def embedding_features(
    embedding: np.ndarray, mask: np.ndarray, input_size: tuple[int, int], img_size: int = 1024
) -> np.ndarray:
    """Embedding averaged inside the mask and in a ring around it, plus the shape block.

    ``embedding`` is (C, h, w) or (1, C, h, w) over the padded ``img_size`` square; ``input_size`` is the
    resized image's (h, w) inside it (what the predictor calls ``input_size``). Pooled vectors are
    L2-normalised so images of different contrast land on the same scale.
    """
    embedding = np.asarray(embedding, dtype=np.float32)
    if embedding.ndim == 4:
        embedding = embedding[0]
    if embedding.ndim != 3:
        raise ValueError(f"embedding must be (C, h, w), got shape {embedding.shape}")
    channels, gh, gw = embedding.shape
    mask = _at_most(np.asarray(mask, dtype=bool), 4 * max(gh, gw))
    inside = _cell_weights(mask, input_size, (gh, gw), img_size)
    if inside.sum() < 1e-6:  # a mask smaller than a cell: take the cell that holds its centre
        ys, xs = np.nonzero(mask)
        inside = np.zeros((gh, gw), np.float32)
        if xs.size:
            scale = (
                input_size[0] / mask.shape[0] * gh / img_size,
                input_size[1] / mask.shape[1] * gw / img_size,
            )
            inside[min(int(ys.mean() * scale[0]), gh - 1), min(int(xs.mean() * scale[1]), gw - 1)] = 1.0
    grown = cv2.dilate((inside > 0).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(np.float32)
    ring = np.clip(grown - inside, 0.0, 1.0)
    valid = np.zeros((gh, gw), np.float32)  # the ring stays out of the zero padding
    valid[: int(np.ceil(input_size[0] * gh / img_size)), : int(np.ceil(input_size[1] * gw / img_size))] = 1.0
    ring *= valid
    flat = embedding.reshape(channels, -1)
    # einsum, not a BLAS matrix-vector product: one thread, the same cost on a busy web process.
    pooled = [
        _normalise(np.einsum("cn,n->c", flat, weights.ravel()) / max(weights.sum(), 1e-6))
        for weights in (inside, ring)
    ]
    return np.concatenate([*pooled, shape_features(mask)]).astype(np.float32)


def classic_features(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Colour (Lab statistics and a hue histogram), texture (gradient energy and orientations), the
    contrast with a ring around the mask, and the shape block: what the pixels alone can say."""
    mask = np.asarray(mask, dtype=bool)
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        raise ValueError("the mask is empty")
    h, w = mask.shape
    pad = max(4, int(0.15 * max(np.ptp(xs) + 1, np.ptp(ys) + 1)))
    x0, x1 = max(xs.min() - pad, 0), min(xs.max() + 1 + pad, w)
    y0, y1 = max(ys.min() - pad, 0), min(ys.max() + 1 + pad, h)
    crop, crop_mask = image[y0:y1, x0:x1], mask[y0:y1, x0:x1]
    scale = CLASSIC_CROP / max(crop.shape[:2])
    if scale < 1:
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        crop_mask = cv2.resize(crop_mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    if not crop_mask.any():
        crop_mask[crop_mask.shape[0] // 2, crop_mask.shape[1] // 2] = True
    rgb = np.ascontiguousarray(crop[..., :3] if crop.ndim == 3 else np.repeat(crop[..., None], 3, axis=2))
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32) / 255.0
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    ring = cv2.dilate(crop_mask.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool) & ~crop_mask
    inside_lab = lab[crop_mask]
    ring_lab = lab[ring] if ring.any() else inside_lab
    hue = np.bincount(
        (hsv[..., 0][crop_mask].astype(np.int32) * COLOUR_BINS) // 180,
        weights=hsv[..., 1][crop_mask].astype(np.float64) / 255.0,
        minlength=COLOUR_BINS,
    )[:COLOUR_BINS]
    hue = hue / max(crop_mask.sum(), 1)
    grey = lab[..., 0]
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    magnitude = np.hypot(gx, gy)[crop_mask]
    angle = (np.arctan2(gy, gx)[crop_mask] % np.pi) / np.pi
    orientations = np.bincount(
        np.minimum((angle * ORIENTATION_BINS).astype(np.int32), ORIENTATION_BINS - 1),
        weights=magnitude,
        minlength=ORIENTATION_BINS,
    )
    orientations = orientations / max(orientations.sum(), 1e-6)
    return np.concatenate(
        [
            inside_lab.mean(0),
            inside_lab.std(0),
            inside_lab.mean(0) - ring_lab.mean(0),
            hue,
            [magnitude.mean(), magnitude.std()],
            orientations,
            shape_features(mask),
        ]
    ).astype(np.float32)


def _at_most(mask: np.ndarray, longest: int) -> np.ndarray:
    """The mask at no more than ``longest`` pixels a side (the low-res logits' size): pooling over
    64 x 64 cells and the shape block need no more, and a full-size mask would cost milliseconds."""
    h, w = mask.shape
    if max(h, w) <= longest:
        return mask
    scale = longest / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0


def _normalise(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-6)
