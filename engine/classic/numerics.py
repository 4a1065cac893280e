"""The numerics of the classic segmenter: a random walker with priors solved by conjugate gradients
(coarse to fine), the colour model, the guided filter, and small mask operations. Plain functions
of numpy arrays; the predictor and the region strategy call them."""

from __future__ import annotations

import cv2
import numpy as np

LOGIT_SCALE = 12.0  # logit of a confident pixel: masks are ``logits > 0`` as with SAM


def logit(probability: np.ndarray) -> np.ndarray:
    p = np.clip(probability, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p)).astype(np.float32)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


def ring(mask: np.ndarray) -> np.ndarray:
    """The mask's boundary pixels."""
    eroded = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
    return mask & (eroded == 0)


def distance_to_edges(lab: np.ndarray) -> np.ndarray:
    """Distance of every pixel to the nearest strong colour edge (gradient magnitude above
    2.5x its mean)."""
    lab = lab.astype(np.float32)
    magnitude = np.zeros(lab.shape[:2], np.float32)
    for channel in range(3):
        magnitude += cv2.Sobel(lab[:, :, channel], cv2.CV_32F, 1, 0) ** 2
        magnitude += cv2.Sobel(lab[:, :, channel], cv2.CV_32F, 0, 1) ** 2
    edges = magnitude > (2.5**2) * max(float(magnitude.mean()), 1e-6)
    return cv2.distanceTransform((~edges).astype(np.uint8), cv2.DIST_L2, 3)


def edge_weights(lab: np.ndarray, smoothness: float) -> tuple[np.ndarray, np.ndarray]:
    """Contrast-sensitive neighbour weights exp(-k·|ΔLab|²/mean|ΔLab|²) as in GrabCut."""
    lab = lab.astype(np.float32)
    diff_h = np.sum((lab[:, 1:] - lab[:, :-1]) ** 2, axis=2)
    diff_v = np.sum((lab[1:, :] - lab[:-1, :]) ** 2, axis=2)
    mean = (diff_h.sum() + diff_v.sum()) / max(1, diff_h.size + diff_v.size)
    scale = smoothness / max(mean, 1e-6)
    return np.exp(-scale * diff_h) + 1e-3, np.exp(-scale * diff_v) + 1e-3


def color_prior(lab: np.ndarray, fixed: np.ndarray, prior: np.ndarray | None, from_box: bool) -> np.ndarray:
    """Per-pixel object probability from smoothed 3-D Lab histograms of object and background
    samples: the previous mask (or box interior) and object seeds vs. the rest and background
    seeds. A weak colour model (few samples) stays close to 0.5."""
    bins = 16
    quantized = (lab // (256 // bins)).astype(np.int32)
    index = (quantized[:, :, 0] * bins + quantized[:, :, 1]) * bins + quantized[:, :, 2]
    if prior is not None:
        object_weight = prior.copy()
        background_weight = 1.0 - prior
    elif from_box:
        free = fixed == 0
        object_weight = free.astype(np.float32)
        background_weight = (fixed == 2).astype(np.float32)
    else:  # lone clicks: seeds against the ROI's border band
        object_weight = np.zeros(lab.shape[:2], np.float32)
        background_weight = border_band(fixed.shape, max(2, min(fixed.shape) // 10))
    object_weight = object_weight + 4.0 * (fixed == 1)
    background_weight = background_weight + 4.0 * (fixed == 2)
    object_hist = smoothed_histogram(index, object_weight, bins)
    background_hist = smoothed_histogram(index, background_weight, bins)
    ratio = object_hist / (object_hist + background_hist + 1e-12)
    return ratio.astype(np.float32)[index]


def border_band(shape: tuple[int, int], width: int) -> np.ndarray:
    band = np.zeros(shape, np.float32)
    band[:width, :] = band[-width:, :] = 1.0
    band[:, :width] = band[:, -width:] = 1.0
    return band


def smoothed_histogram(index: np.ndarray, weights: np.ndarray, bins: int) -> np.ndarray:
    hist = np.bincount(index.ravel(), weights=weights.ravel(), minlength=bins**3).reshape(bins, bins, bins)
    for axis in range(3):  # separable [1/4, 1/2, 1/4] blur: neighbouring colours count too
        padded = np.pad(hist, [(1, 1) if a == axis else (0, 0) for a in range(3)])
        lower = np.take(padded, range(0, bins), axis=axis)
        upper = np.take(padded, range(2, bins + 2), axis=axis)
        hist = 0.5 * hist + 0.25 * (lower + upper)
    total = hist.sum()
    density = hist / total if total > 0 else hist
    return density.ravel() + 1.0 / bins**3 * 0.05


def solve_coarse_to_fine(
    lab: np.ndarray,
    fixed: np.ndarray,
    target: np.ndarray,
    initial: np.ndarray,
    smoothness: float,
    prior_weight: float,
    iterations: int,
    min_pixels: int = 5000,
) -> np.ndarray:
    """Random walker solved on a pyramid: the half-resolution solution is the starting point of
    the full-resolution one, so seeds spread across the region in few conjugate-gradient steps.
    At half resolution each pixel stands for four, hence four times the prior weight."""
    height, width = fixed.shape
    if height * width > min_pixels and min(height, width) >= 16:
        half = ((width + 1) // 2, (height + 1) // 2)
        coarse_fixed = downsample_labels(fixed)
        coarse = solve_coarse_to_fine(
            cv2.resize(lab, half, interpolation=cv2.INTER_AREA),
            coarse_fixed,
            cv2.resize(target, half, interpolation=cv2.INTER_AREA),
            cv2.resize(initial.astype(np.float32), half, interpolation=cv2.INTER_AREA),
            smoothness,
            4.0 * prior_weight,
            iterations,
            min_pixels,
        )
        initial = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)
        iterations = max(20, iterations // 3)
    weights_h, weights_v = edge_weights(lab, smoothness)
    return random_walker(weights_h, weights_v, fixed, target, prior_weight, initial, iterations)


def downsample_labels(fixed: np.ndarray) -> np.ndarray:
    """Halve a seed label image: a coarse pixel is a seed when any of its fine pixels is, and
    free where object and background seeds meet."""
    height, width = fixed.shape
    padded = np.zeros((height + height % 2, width + width % 2), np.uint8)
    padded[:height, :width] = fixed
    blocks = padded.reshape(padded.shape[0] // 2, 2, padded.shape[1] // 2, 2)
    has_object = (blocks == 1).any(axis=(1, 3))
    has_background = (blocks == 2).any(axis=(1, 3))
    coarse = np.zeros(has_object.shape, np.uint8)
    coarse[has_object & ~has_background] = 1
    coarse[has_background & ~has_object] = 2
    return coarse


def random_walker(
    weights_h: np.ndarray,
    weights_v: np.ndarray,
    fixed: np.ndarray,
    target: np.ndarray,
    prior_weight: float,
    initial: np.ndarray,
    iterations: int,
) -> np.ndarray:
    """Minimise Σ w_ij (x_i - x_j)² + λ Σ (x_i - target_i)² with x fixed at the seeds, by
    Jacobi-preconditioned conjugate gradients on the free pixels. λ > 0 keeps the system well
    conditioned, so a fixed small number of steps converges."""
    free = (fixed == 0).astype(np.float32)
    known = (fixed == 1).astype(np.float32)
    degree = np.zeros(fixed.shape, np.float32)
    degree[:, :-1] += weights_h
    degree[:, 1:] += weights_h
    degree[:-1, :] += weights_v
    degree[1:, :] += weights_v
    diagonal = degree + prior_weight

    def neighbours(x: np.ndarray) -> np.ndarray:
        out = np.zeros_like(x)
        out[:, :-1] += weights_h * x[:, 1:]
        out[:, 1:] += weights_h * x[:, :-1]
        out[:-1, :] += weights_v * x[1:, :]
        out[1:, :] += weights_v * x[:-1, :]
        return out

    def operator(x: np.ndarray) -> np.ndarray:
        return (diagonal * x - neighbours(x)) * free

    rhs = (prior_weight * target.astype(np.float32) + neighbours(known)) * free
    x = np.clip(initial.astype(np.float32), 0, 1) * free
    residual = rhs - operator(x)
    inverse_diagonal = free / diagonal
    z = residual * inverse_diagonal
    direction = z.copy()
    rz = float(np.vdot(residual, z))
    tolerance = 1e-6 * max(float(np.vdot(rhs, rhs)), 1e-12)
    for _ in range(iterations):
        if float(np.vdot(residual, residual)) <= tolerance:
            break
        a_direction = operator(direction)
        step = rz / max(float(np.vdot(direction, a_direction)), 1e-20)
        x += step * direction
        residual -= step * a_direction
        z = residual * inverse_diagonal
        rz_next = float(np.vdot(residual, z))
        direction = z + (rz_next / max(rz, 1e-20)) * direction
        rz = rz_next
    return np.clip(x + known, 0.0, 1.0)


def keep_seeded_components(
    soft: np.ndarray, object_seeds: np.ndarray, prior: np.ndarray | None
) -> np.ndarray:
    """Drop object islands that no positive click or previous mask supports (stray colour
    matches in the background)."""
    mask = (soft > 0.5).astype(np.uint8)
    count, components = cv2.connectedComponents(mask, connectivity=8)
    if count <= 2:
        return soft
    support = object_seeds.copy()
    if prior is not None:
        support |= prior > 0.5
    if not support.any():  # box only: keep the largest island
        sizes = np.bincount(components.ravel(), minlength=count)
        sizes[0] = 0
        keep = np.zeros(count, bool)
        keep[int(np.argmax(sizes))] = True
    else:
        keep = np.zeros(count, bool)
        keep[np.unique(components[support])] = True
        keep[0] = False
    result = soft.copy()
    drop = (mask > 0) & ~keep[components]
    result[drop] = np.minimum(result[drop], 0.49)
    return result


def guided_coefficients(
    guide: np.ndarray, source: np.ndarray, radius: int, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """He et al.'s guided filter, as the smoothed coefficients (a, b) of ``source ≈ a·guide + b``:
    applied to an upsampled soft mask, its edges follow the image's."""
    size = (2 * radius + 1, 2 * radius + 1)

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, size, borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = box(guide), box(source)
    cov_ip = box(guide * source) - mean_i * mean_p
    var_i = box(guide * guide) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box(a), box(b)
