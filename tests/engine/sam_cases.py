"""Shared prompts and comparisons for the SAM equivalence, precision and embedding tests."""

from __future__ import annotations

import numpy as np
import torch

LOGIT_ATOL = 1e-3
IOU_ATOL = 1e-4
MIN_PIXEL_AGREEMENT = 0.999


def random_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth random RGB image (blobs + noise) so resizing and masks have structure."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    image = np.zeros((h, w, 3), np.float32)
    for _ in range(4):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.1, 0.4) * max(h, w)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        image += blob[..., None] * rng.uniform(0, 255, 3)
    image += rng.normal(0, 10, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def prompt_cases(h: int, w: int) -> list[tuple[str, dict]]:
    """(name, predict kwargs without mask_input/multimask) in original-image pixels."""
    pos = [0.45 * w, 0.5 * h]
    neg = [0.8 * w, 0.2 * h]
    box = np.array([0.2 * w, 0.25 * h, 0.7 * w, 0.8 * h])
    return [
        ("one positive point", {"point_coords": np.array([pos]), "point_labels": np.array([1])}),
        (
            "positive and negative points",
            {"point_coords": np.array([pos, neg]), "point_labels": np.array([1, 0])},
        ),
        ("box", {"box": box}),
        (
            "box and points",
            {"box": box, "point_coords": np.array([pos, neg]), "point_labels": np.array([1, 0])},
        ),
    ]


def run_prompt_matrix(ours, official, h: int, w: int) -> list[tuple[str, tuple, tuple]]:
    """Every prompt case × multimask on/off, plus a second round fed the first round's best
    low-res logits as mask_input. Returns (label, our outputs, official outputs)."""
    results = []
    for name, kwargs in prompt_cases(h, w):
        for multimask in (True, False):
            label = f"{name}, multimask={multimask}"
            results.append(
                (
                    label,
                    ours.predict(**kwargs, multimask_output=multimask),
                    official.predict(**kwargs, multimask_output=multimask),
                )
            )
    first = official.predict(**prompt_cases(h, w)[0][1], multimask_output=True)
    previous = first[2][np.argmax(first[1])][None]
    kwargs = {**prompt_cases(h, w)[1][1], "mask_input": previous}
    for multimask in (True, False):
        results.append(
            (
                f"mask input from a previous round, multimask={multimask}",
                ours.predict(**kwargs, multimask_output=multimask),
                official.predict(**kwargs, multimask_output=multimask),
            )
        )
    return results


def assert_same_outputs(label: str, ours: tuple, reference: tuple) -> None:
    masks, scores, logits = ours
    ref_masks, ref_scores, ref_logits = reference
    assert masks.shape == ref_masks.shape and masks.dtype == ref_masks.dtype, label
    assert logits.shape == ref_logits.shape and scores.shape == ref_scores.shape, label
    logit_err = float(np.abs(logits - ref_logits).max())
    assert logit_err <= LOGIT_ATOL, f"{label}: low-res logits differ by {logit_err:.2e}"
    iou_err = float(np.abs(scores - ref_scores).max())
    assert iou_err <= IOU_ATOL, f"{label}: IoU predictions differ by {iou_err:.2e}"
    agreement = float((masks == ref_masks).mean())
    assert agreement >= MIN_PIXEL_AGREEMENT, f"{label}: only {agreement:.5%} of mask pixels agree"


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def mean_mask_iou(results_a: list[tuple], results_b: list[tuple]) -> float:
    """Mean IoU between corresponding masks of two lists of predict() outputs."""
    ious = [mask_iou(x, y) for a, b in zip(results_a, results_b) for x, y in zip(a[0], b[0])]
    return float(np.mean(ious))


def all_prompt_outputs(predictor, h: int, w: int) -> list[tuple]:
    """predict() outputs for every prompt case with multimask on and off (no mask input)."""
    return [
        predictor.predict(**kwargs, multimask_output=mm)
        for _, kwargs in prompt_cases(h, w)
        for mm in (True, False)
    ]


@torch.no_grad()
def copy_official_weights(ours: torch.nn.Module, official: torch.nn.Module) -> torch.nn.Module:
    ours.load_state_dict(official.state_dict(), strict=True)
    return ours.eval()


def one_torch_thread():
    """Generator body for an autouse fixture: the test machine's 2 cores are shared by many jobs,
    and torch's intra-op threads spin against each other there (10-50x slower than 1 thread)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
