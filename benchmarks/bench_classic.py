"""Latency of the classic segmenter per click, at 640x480 and 2000x1500, next to the plain
full-resolution GrabCut it replaces (the reference: one cv2.grabCut per click, 5 iterations,
seeded by the same clicks), in one run.

Clicks come from the evaluation protocol on real COCO-MVal objects resized to each size (first
click multimask, later clicks single-mask with the previous logits fed back, as an annotator's
session); ``set_image`` is timed separately. Without ../shared/data a synthetic scene is used.

    python benchmarks/bench_classic.py [--objects 6] [--clicks 8] [--grabcut-clicks 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.classic import ClassicPredictor
from engine.evaluation import first_click, load_click_dataset, mask_iou, next_click

SIZES = ((640, 480), (2000, 1500))
DATASETS = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "coco-mval-subset",
    Path("/work/shared/data/coco-mval-subset"),
)


def scenes(count: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, image, gt) pairs at their original size: COCO-MVal objects when present."""
    for root in DATASETS:
        if root.is_dir():
            instances = load_click_dataset(root)
            step = max(1, len(instances) // count)
            return [(i.name, *i.load()) for i in instances[::step][:count]]
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(100, 20, (480, 640, 3)), 0, 255).astype(np.uint8)
    gt = np.zeros((480, 640), np.uint8)
    cv2.ellipse(gt, (330, 240), (150, 90), 20, 0, 360, 1, -1)
    image[gt > 0] = (200, 80, 60)
    return [("synthetic ellipse", image, gt > 0)]


def resized(image: np.ndarray, gt: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    big_image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    big_gt = cv2.resize(gt.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    return big_image, big_gt


def classic_session(
    predictor: ClassicPredictor, image: np.ndarray, gt: np.ndarray, clicks: int, cpu: list[float]
) -> tuple[float, list[float], list[float], float]:
    """(set_image s, first-click s, later-click s list, final IoU) for one simulated session;
    the CPU seconds of every click are appended to ``cpu``."""
    started = time.perf_counter()
    predictor.set_image(image)
    set_image_seconds = time.perf_counter() - started
    points = [first_click(gt)]
    logits = None
    first, later = [], []
    mask = np.zeros_like(gt)
    for round_index in range(clicks):
        started, cpu_started = time.perf_counter(), time.process_time()
        masks, scores, low_res = predictor.predict(
            np.array([[c.x, c.y] for c in points], np.float32),
            np.array([int(c.positive) for c in points]),
            mask_input=logits,
            multimask_output=round_index == 0,
        )
        (first if round_index == 0 else later).append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
        best = int(np.argmax(scores))
        mask, logits = masks[best], low_res[best][None]
        click = next_click(gt, mask)
        if click is None:
            break
        points.append(click)
    return set_image_seconds, first, later, mask_iou(mask, gt)


def grabcut_session(image: np.ndarray, gt: np.ndarray, clicks: int) -> list[float]:
    """Seconds per click of full-resolution GrabCut seeded by the protocol's clicks."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    points = [first_click(gt)]
    seconds = []
    for _ in range(clicks):
        labels = np.full(gt.shape, cv2.GC_PR_BGD, np.uint8)
        for c in points:
            if c.positive:
                cv2.circle(labels, (c.x, c.y), 40, cv2.GC_PR_FGD, -1)
        for c in points:
            cv2.circle(labels, (c.x, c.y), 5, cv2.GC_FGD if c.positive else cv2.GC_BGD, -1)
        started = time.perf_counter()
        background, foreground = np.zeros((1, 65)), np.zeros((1, 65))
        cv2.grabCut(bgr, labels, None, background, foreground, 5, cv2.GC_INIT_WITH_MASK)
        seconds.append(time.perf_counter() - started)
        mask = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
        click = next_click(gt, mask)
        if click is None:
            break
        points.append(click)
    return seconds


def ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=6)
    parser.add_argument("--clicks", type=int, default=8)
    parser.add_argument("--grabcut-clicks", type=int, default=2, help="reference clicks per object (slow)")
    parser.add_argument("--grabcut-objects", type=int, default=2)
    args = parser.parse_args()
    data = scenes(args.objects)
    print(f"{len(data)} objects, {args.clicks} clicks each; OpenCV threads {cv2.getNumThreads()}")
    header = (
        f"{'size':>10} {'set_image ms':>12} {'click med':>9} {'p90':>7} {'1st(3 masks) med':>16}"
        f" {'later med':>9} {'CPU med':>7} {'GrabCut med':>11} {'ratio':>6}"
    )
    print(header)
    for size in SIZES:
        predictor = ClassicPredictor()
        set_times, firsts, laters, cpu = [], [], [], []
        for _, image, gt in data:
            big_image, big_gt = resized(image, gt, size)
            set_seconds, first, later, _ = classic_session(predictor, big_image, big_gt, args.clicks, cpu)
            set_times.append(set_seconds)
            firsts += first
            laters += later
        reference = []
        for _, image, gt in data[: args.grabcut_objects]:
            big_image, big_gt = resized(image, gt, size)
            reference += grabcut_session(big_image, big_gt, args.grabcut_clicks)
        every = firsts + laters
        ratio = np.median(every) / np.median(reference)
        print(
            f"{size[0]}x{size[1]:<5} {ms(set_times, 50):12.1f} {ms(every, 50):9.1f} {ms(every, 90):7.1f}"
            f" {ms(firsts, 50):16.1f} {ms(laters, 50):9.1f} {ms(cpu, 50):7.1f} {ms(reference, 50):11.1f}"
            f" {ratio:6.3f}"
        )
    print(
        "ms, wall clock. click med/p90: all clicks of all sessions; CPU med: process CPU time per click"
        " (all threads; robust when the machine is shared); ratio: classic / GrabCut click medians"
    )
    print(
        f"load average at the end: {' '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
