"""Click-based evaluation of interactive segmenters (the NoC protocol of RITM / the SAM paper).

A simulated annotator clicks on an object until the mask is right:

* the first click is a positive one at the point of the object farthest from its boundary;
* each next click goes to the error region that reaches deepest, at its point farthest from the
  region's boundary: positive in a false negative (missed object), negative in a false positive.
  "Larger" is measured by that depth (the maximum of the distance transform), as RITM does, so a
  wide blob wins over a thin sliver of the same area; ties go to the negative click, as in RITM.
* the previous round's best low-res logits are fed back as ``mask_input``; the first round asks
  for three masks and keeps the best-scored one, later rounds ask for one (SAM paper, §7.1).

The image border counts as boundary (masks are zero-padded before the distance transform), and
among equally deep points the first in row-major order wins, so the protocol is deterministic.

Metrics: the IoU after each click; mIoU@k (mean over instances of the IoU after k clicks);
NoC@t (clicks needed to reach IoU t, ``max_clicks`` when never); failures (instances that never
reach 90 % within ``max_clicks``).

The evaluated object only needs the Predictor API (``set_image`` and ``predict`` returning masks,
scores and low-res logits), so SAM, MobileSAM and the classic segmenter are measured the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import cv2
import numpy as np
from PIL import Image

from engine.images import read_image

MultimaskMode = Literal["first", "always", "never"]
NOC_THRESHOLDS = (0.85, 0.90)
MIOU_AT = (1, 3, 5)


class PromptPredictor(Protocol):
    """What the protocol needs from a segmenter: the SamPredictor methods it calls."""

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None: ...

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class Click:
    """One simulated click in image pixels (x = column, y = row)."""

    x: int
    y: int
    positive: bool


# --------------------------------------------------------------------------------------------
# The click simulator
# --------------------------------------------------------------------------------------------


def _check_mask(mask: np.ndarray, what: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (H, W) mask, got shape {mask.shape}")
    return mask.astype(bool, copy=False)


def distance_to_boundary(region: np.ndarray) -> np.ndarray:
    """Euclidean distance of every region pixel to the nearest pixel outside it (the image border
    counts as outside); 0 outside the region."""
    padded = np.pad(region.astype(np.uint8), 1)
    return cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]


def _deepest_point(region: np.ndarray) -> tuple[float, int, int]:
    """(depth, y, x) of the region's point farthest from its boundary; first in row-major order."""
    dist = distance_to_boundary(region)
    flat_index = int(np.argmax(dist))
    y, x = divmod(flat_index, dist.shape[1])
    return float(dist[y, x]), y, x


def first_click(gt: np.ndarray) -> Click:
    """Positive click at the object's point farthest from its boundary."""
    gt = _check_mask(gt, "gt")
    if not gt.any():
        raise ValueError("the ground-truth mask is empty: there is no object to click on")
    _, y, x = _deepest_point(gt)
    return Click(x=x, y=y, positive=True)


def next_click(gt: np.ndarray, pred: np.ndarray) -> Click | None:
    """The click that corrects the deepest error of ``pred``; None when ``pred`` equals ``gt``."""
    gt = _check_mask(gt, "gt")
    pred = _check_mask(pred, "pred")
    if gt.shape != pred.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from the ground truth {gt.shape}")
    fn_depth, fn_y, fn_x = _deepest_point(gt & ~pred)
    fp_depth, fp_y, fp_x = _deepest_point(~gt & pred)
    if fn_depth == 0 and fp_depth == 0:
        return None
    if fn_depth > fp_depth:
        return Click(x=fn_x, y=fn_y, positive=True)
    return Click(x=fp_x, y=fp_y, positive=False)


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Intersection over union; two empty masks agree perfectly (1.0)."""
    union = np.count_nonzero(pred | gt)
    return 1.0 if union == 0 else np.count_nonzero(pred & gt) / union


# --------------------------------------------------------------------------------------------
# Running the protocol on one instance
# --------------------------------------------------------------------------------------------


@dataclass
class InstanceResult:
    """The IoU after each click (``ious[k-1]`` after k clicks) and the clicks themselves."""

    name: str
    ious: list[float]
    clicks: list[Click]
    seconds_per_click: float = 0.0

    def noc(self, threshold: float, max_clicks: int | None = None) -> int:
        return clicks_to_reach(self.ious, threshold, max_clicks)


def clicks_to_reach(ious: Sequence[float], threshold: float, max_clicks: int | None = None) -> int:
    """Number of clicks after which the IoU first reaches ``threshold``; ``max_clicks`` (default:
    the curve's length) when it never does."""
    limit = len(ious) if max_clicks is None else max_clicks
    for k, iou in enumerate(ious[:limit], start=1):
        if iou >= threshold:
            return k
    return limit


def evaluate_instance(
    predictor: PromptPredictor,
    gt: np.ndarray,
    max_clicks: int = 20,
    multimask: MultimaskMode = "first",
    feed_back_logits: bool = True,
    name: str = "",
    image: np.ndarray | None = None,
) -> InstanceResult:
    """Simulate up to ``max_clicks`` clicks on one object and record the IoU after each.

    ``image`` is given to ``predictor.set_image`` first; pass None when the predictor already holds
    this image (several objects of one image share the embedding). The clicks are all sent each
    round, the earliest first, as an annotator's tool does.
    """
    if max_clicks < 1:
        raise ValueError(f"max_clicks must be at least 1, got {max_clicks}")
    if multimask not in ("first", "always", "never"):
        raise ValueError(f"multimask must be 'first', 'always' or 'never', got {multimask!r}")
    gt = _check_mask(gt, "gt")
    if image is not None:
        if image.shape[:2] != gt.shape:
            raise ValueError(f"image size {image.shape[:2]} differs from the ground truth {gt.shape}")
        predictor.set_image(image)
    clicks = [first_click(gt)]
    ious: list[float] = []
    logits: np.ndarray | None = None
    predict_seconds = 0.0
    while True:
        round_index = len(clicks) - 1
        multimask_output = multimask == "always" or (multimask == "first" and round_index == 0)
        started = time.perf_counter()
        masks, scores, low_res = predictor.predict(
            point_coords=np.array([[c.x, c.y] for c in clicks], dtype=np.float32),
            point_labels=np.array([int(c.positive) for c in clicks], dtype=np.int64),
            mask_input=logits if feed_back_logits else None,
            multimask_output=multimask_output,
        )
        predict_seconds += time.perf_counter() - started
        best = int(np.argmax(scores))
        pred = np.asarray(masks[best]).astype(bool)
        if pred.shape != gt.shape:
            raise ValueError(f"predictor returned a {pred.shape} mask for a {gt.shape} image")
        logits = np.asarray(low_res[best])[None]
        ious.append(mask_iou(pred, gt))
        if len(clicks) == max_clicks:
            break
        click = next_click(gt, pred)
        if click is None:  # perfect mask: further clicks have nothing to correct
            ious.extend([ious[-1]] * (max_clicks - len(ious)))
            break
        clicks.append(click)
    return InstanceResult(
        name=name, ious=ious, clicks=clicks, seconds_per_click=predict_seconds / len(clicks)
    )


# --------------------------------------------------------------------------------------------
# Metrics over a dataset
# --------------------------------------------------------------------------------------------


@dataclass
class Summary:
    instances: int
    max_clicks: int
    miou: dict[str, float]
    noc: dict[str, float]
    failures: int
    failed: list[str] = field(default_factory=list)
    seconds_per_click: float = 0.0
    miou_curve: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(results: Sequence[InstanceResult], max_clicks: int = 20) -> Summary:
    """mIoU@1/3/5, NoC@85/90 and the instances that never reach 90 % within ``max_clicks``."""
    if not results:
        raise ValueError("no results to summarize")
    for result in results:
        if len(result.ious) < max_clicks:
            raise ValueError(f"{result.name!r} has {len(result.ious)} IoUs, fewer than {max_clicks} clicks")
    curves = np.array([r.ious[:max_clicks] for r in results], dtype=np.float64)
    miou = {f"mIoU@{k}": float(curves[:, k - 1].mean()) for k in MIOU_AT if k <= max_clicks}
    noc = {
        f"NoC@{round(t * 100)}": float(np.mean([r.noc(t, max_clicks) for r in results]))
        for t in NOC_THRESHOLDS
    }
    failed = [r.name for r in results if not any(iou >= 0.90 for iou in r.ious[:max_clicks])]
    return Summary(
        instances=len(results),
        max_clicks=max_clicks,
        miou=miou,
        noc=noc,
        failures=len(failed),
        failed=failed,
        seconds_per_click=float(np.mean([r.seconds_per_click for r in results])),
        miou_curve=[float(v) for v in curves.mean(axis=0)],
    )


# --------------------------------------------------------------------------------------------
# The COCO-MVal layout: img/<name>.jpg with gt/<name>.png (0/255, one object per file)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instance:
    name: str
    image_path: Path
    gt_path: Path

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """(RGB uint8 image read the one Maskmill way, bool ground-truth mask)."""
        image = read_image(self.image_path)
        with Image.open(self.gt_path) as gt_file:
            gt = np.asarray(gt_file.convert("L")) > 127
        if gt.shape != image.shape[:2]:
            raise ValueError(
                f"{self.name}: ground truth is {gt.shape[1]}x{gt.shape[0]} but the image is "
                f"{image.shape[1]}x{image.shape[0]}"
            )
        return image, gt


def load_click_dataset(root: str | Path, limit: int | None = None) -> list[Instance]:
    """Instances of a folder with ``img/*.jpg`` and matching ``gt/*.png`` (names may have spaces),
    sorted by name so that objects of one image come together and runs are reproducible."""
    root = Path(root)
    image_dir, gt_dir = root / "img", root / "gt"
    if not image_dir.is_dir() or not gt_dir.is_dir():
        raise ValueError(f"{root} must contain the folders img/ and gt/")
    images = {p.stem: p for p in image_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")}
    instances = []
    for gt_path in sorted(gt_dir.glob("*.png")):
        if gt_path.stem not in images:
            raise ValueError(f"{gt_path.name} has no image in {image_dir}")
        instances.append(Instance(gt_path.stem, images[gt_path.stem], gt_path))
    if not instances:
        raise ValueError(f"no ground-truth masks (*.png) in {gt_dir}")
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        instances = instances[:limit]
    return instances


def evaluate_dataset(
    predictor: PromptPredictor,
    instances: Iterable[Instance],
    max_clicks: int = 20,
    multimask: MultimaskMode = "first",
    feed_back_logits: bool = True,
    progress: bool = False,
) -> list[InstanceResult]:
    """Run the protocol on every instance; ``set_image`` is skipped when an object's image is the
    same as the previous one's (COCO-MVal holds several objects of some images)."""
    results = []
    previous: np.ndarray | None = None
    for index, instance in enumerate(instances, start=1):
        image, gt = instance.load()
        same_image = (
            previous is not None and previous.shape == image.shape and np.array_equal(previous, image)
        )
        result = evaluate_instance(
            predictor,
            gt,
            max_clicks=max_clicks,
            multimask=multimask,
            feed_back_logits=feed_back_logits,
            name=instance.name,
            image=None if same_image else image,
        )
        previous = image
        results.append(result)
        if progress:
            at_5 = result.ious[min(4, max_clicks - 1)]
            print(
                f"[{index}] {instance.name}: IoU@1 {result.ious[0]:.3f} @5 {at_5:.3f}"
                f" NoC@90 {result.noc(0.9, max_clicks)}",
                file=sys.stderr,
            )
    return results


def format_table(summary: Summary, title: str = "") -> str:
    """A small plain-text table of the headline figures."""
    rows = [(k, f"{v:.4f}") for k, v in summary.miou.items()]
    rows += [(k, f"{v:.2f}") for k, v in summary.noc.items()]
    rows += [
        (f"failures (<90% in {summary.max_clicks})", f"{summary.failures} / {summary.instances}"),
        ("ms per click (mean)", f"{summary.seconds_per_click * 1000:.1f}"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [title] if title else []
    lines += [f"{name:<{width}}  {value:>10}" for name, value in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def build_predictor(model: str, model_type: str | None, checkpoint: str | None) -> PromptPredictor:
    """The classic segmenter, or a SAM-family Predictor (imported only when asked for)."""
    if model == "classic":
        from engine.classic import ClassicPredictor

        return ClassicPredictor()
    if not model_type:
        raise ValueError("--model sam needs --model-type (vit_b, vit_l, vit_h or vit_t)")
    from engine.predictor import Predictor
    from engine.sam import build_sam

    sam = build_sam(model_type, checkpoint=checkpoint)
    sam.eval()
    return Predictor(sam)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine.evaluation",
        description="Click-based evaluation (mIoU@k, NoC@85/90) of an interactive segmenter.",
    )
    parser.add_argument("--dataset", required=True, help="folder with img/ and gt/ (COCO-MVal layout)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N instances")
    parser.add_argument("--max-clicks", type=int, default=20)
    parser.add_argument("--model", choices=("classic", "sam"), default="classic")
    parser.add_argument("--model-type", default=None, help="with --model sam: vit_b, vit_l, vit_h, vit_t")
    parser.add_argument("--checkpoint", default=None, help="with --model sam: checkpoint file")
    parser.add_argument("--multimask", choices=("first", "always", "never"), default="first")
    parser.add_argument("--no-feedback", action="store_true", help="do not feed logits back as mask_input")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the summary JSON here")
    parser.add_argument("--progress", action="store_true", help="print one line per instance to stderr")
    args = parser.parse_args(argv)
    if args.model_type and args.model == "classic":
        args.model = "sam"
    try:
        instances = load_click_dataset(args.dataset, args.limit)
        predictor = build_predictor(args.model, args.model_type, args.checkpoint)
        results = evaluate_dataset(
            predictor,
            instances,
            max_clicks=args.max_clicks,
            multimask=args.multimask,
            feed_back_logits=not args.no_feedback,
            progress=args.progress,
        )
    except ValueError as exc:
        parser.exit(2, f"error: {exc}\n")
    summary = summarize(results, args.max_clicks)
    title = f"{args.model if args.model == 'classic' else args.model_type} on {args.dataset}"
    print(format_table(summary, title))
    payload = {"model": args.model, "model_type": args.model_type, "dataset": str(args.dataset)}
    payload.update(summary.as_dict())
    print(json.dumps(payload))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
