"""Automatic mask generation: Maskmill's MaskGenerator against segment_anything's
SamAutomaticMaskGenerator, same weights, same image, one run.

    python benchmarks/bench_automatic.py --model vit_b --size 1024x768 --points-per-side 32
    python benchmarks/bench_automatic.py --workload both --thresholds both   # random and regions
    python benchmarks/bench_automatic.py --model small --repeats 3 --thresholds both
    python benchmarks/bench_automatic.py --model small --only ours --size 4000x3000 \
        --points-per-side 64 --crop-n-layers 1          # the memory-bound case

Each measurement runs in its own subprocess so that its memory figures belong to it. Prints per
implementation the median wall time, the split (encoder, decoder, filtering, upsampling, NMS,
RLE; "other" is the rest), the RSS once model and image are loaded, the peak RSS while generating
(sampled every 20 ms) and of the whole process (ru_maxrss), the mask count, the speed ratio and
whether the records agree (same count, each mask IoU >= 0.99). ``--workload random``: the seeded
random weights of tests/reference_models with the decoder reshaped as in
tests/engine/test_automatic.py (masks have structure, but nearly one survives NMS);
``--workload regions``: tests/region_models (compact, distinct region masks, hundreds survive, as
with a trained model, so the survivors' path is timed). ``--thresholds zero`` sets
pred_iou_thresh and stability_score_thresh to 0 for both generators (more survivors).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=("small", "vit_b"), default="vit_b")
    p.add_argument(
        "--workload",
        choices=("random", "regions", "both"),
        default="regions",
        help="weights: random (few masks survive NMS), regions (hundreds survive), or one run of each",
    )
    p.add_argument("--size", default="1024x768", help="WIDTHxHEIGHT of the test image")
    p.add_argument("--points-per-side", type=int, default=32)
    p.add_argument("--crop-n-layers", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument(
        "--thresholds",
        choices=("default", "zero", "both"),
        default="default",
        help="pred_iou/stability thresholds: the defaults (0.88 / 0.95), 0 for both, or one run of each",
    )
    p.add_argument("--thresholds-zero", action="store_true", help="same as --thresholds both")
    p.add_argument(
        "--output-mode", choices=("binary_mask", "uncompressed_rle", "coco_rle"), default="coco_rle"
    )
    p.add_argument("--only", choices=("ours", "official"), help="run one implementation")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument(
        "--flush-denormal",
        action="store_true",
        help="torch.set_flush_denormal(True) on both sides (engine.sam's encoder slows down on "
        "denormal floats with the regions weights)",
    )
    p.add_argument(
        "--no-tune-malloc",
        action="store_true",
        help="keep glibc's malloc thresholds (by default both sides get engine.runtime.tune_malloc, "
        "as the platform's worker processes)",
    )
    p.add_argument(
        "--self-check",
        action="store_true",
        help="also run segment_anything with points_per_batch 32 (untimed) and say whether its records "
        "agree with its own 64-point batches: how far float rounding alone moves the records",
    )
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def test_image(width: int, height: int) -> np.ndarray:
    """Photo content tiled to the size (sample photo when available, else shapes)."""
    import cv2

    photo = ROOT.parent / "shared" / "data" / "sample-photos" / "astronaut.png"
    if photo.is_file():
        base = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
        return cv2.resize(base, (width, height), interpolation=cv2.INTER_LINEAR)
    from tests.engine.test_automatic import scene

    return scene(height, width)


def build_models(name: str, which: str, workload: str = "random"):
    from tests.engine.test_automatic import ours_from, structured_
    from tests.reference_models import SMALL_CONFIG, VIT_B_CONFIG, official_sam
    from tests.region_models import REGION_SMALL_CONFIG, region_sam

    if workload == "regions":
        config = REGION_SMALL_CONFIG if name == "small" else VIT_B_CONFIG
        official = region_sam(config, seed=0)
    else:
        config = SMALL_CONFIG if name == "small" else VIT_B_CONFIG
        official = structured_(official_sam(config, seed=0), sharpness=300, offset=0.4, iou_shift=0.6)
    return official if which == "official" else ours_from(official, config)


class StageClock:
    """Times encoder and decoder through forward hooks (works for any Sam-like model) and the
    official generator's helpers by wrapping the names it imported."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self._starts: dict[str, float] = {}

    def hook_module(self, module: torch.nn.Module, stage: str) -> None:
        module.register_forward_pre_hook(lambda *_: self._starts.__setitem__(stage, time.perf_counter()))
        module.register_forward_hook(lambda *_: self._add(stage, time.perf_counter() - self._starts[stage]))

    def _add(self, stage: str, seconds: float) -> None:
        self.totals[stage] += seconds

    def wrap(self, owner, attribute: str, stage: str) -> None:
        original = getattr(owner, attribute)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.totals[stage] += time.perf_counter() - start

        setattr(owner, attribute, timed)


def current_rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class RssSampler:
    """Peak RSS over a block, sampled by a thread (ru_maxrss is the peak of the whole process)."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, current_rss_mb())
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.peak_mb = current_rss_mb()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, current_rss_mb())


def as_coco_rle(segmentation) -> dict:
    """Any output mode's segmentation → compressed COCO RLE, to compare the two sides."""
    from engine.masks import encode_rle, validate_rle

    if isinstance(segmentation, np.ndarray):
        return encode_rle(segmentation)
    return validate_rle(segmentation)


def worker(spec: dict) -> dict:
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    if spec.get("flush_denormal"):
        torch.set_flush_denormal(True)
    if spec.get("tune_malloc", True):
        from engine.runtime import tune_malloc

        tune_malloc()  # as the platform's worker does when it loads a model; on both sides
    width, height = spec["size"]
    image = test_image(width, height)
    model = build_models(spec["model"], spec["which"], spec.get("workload", "random"))
    params = dict(
        points_per_side=spec["points_per_side"],
        crop_n_layers=spec["crop_n_layers"],
        points_per_batch=spec.get("points_per_batch", 64),
    )
    if spec["thresholds_zero"]:
        params.update(pred_iou_thresh=0.0, stability_score_thresh=0.0)
    params["output_mode"] = spec["output_mode"]
    times, splits = [], []
    if spec["which"] == "official":
        from tests.reference import reference

        sa = reference("segment_anything")
        amg = sys.modules["segment_anything.automatic_mask_generator"]
        clock = StageClock()
        clock.hook_module(model.image_encoder, "encoder")
        clock.hook_module(model.mask_decoder, "decoder")
        clock.wrap(model, "postprocess_masks", "upsample")
        clock.wrap(amg, "calculate_stability_score", "filter")
        clock.wrap(amg, "batched_mask_to_box", "filter")
        # torchvision cannot be installed here, so segment_anything runs on tests/stubs/torchvision,
        # whose NMS is a pure-Python O(N^2) loop (minutes with hundreds of survivors). The real one
        # is C++; engine.masks.batched_nms (same semantics, vectorised) stands in for it so that
        # the ratio compares the generators, not the stub.
        from engine.masks import batched_nms

        amg.batched_nms = batched_nms
        clock.wrap(amg, "batched_nms", "nms")
        clock.wrap(amg, "mask_to_rle_pytorch", "rle")
        clock.wrap(amg, "coco_encode_rle", "rle")
        generator = sa.SamAutomaticMaskGenerator(model, **params)
    else:
        from engine.automatic import MaskGenerator

        generator = MaskGenerator(model, **params)
    rss_before = current_rss_mb()
    peaks = []
    for _ in range(spec["repeats"]):
        if spec["which"] == "official":
            clock.totals.clear()
        records = None  # the previous run's records are not part of this run's memory
        with RssSampler() as sampler, torch.no_grad():
            start = time.perf_counter()
            records = generator.generate(image)
            times.append(time.perf_counter() - start)
        peaks.append(sampler.peak_mb)
        splits.append(dict(clock.totals) if spec["which"] == "official" else dict(generator.timings))
    masks_file = spec.get("masks_file")
    if masks_file:
        kept = [
            {
                "rle": as_coco_rle(r["segmentation"]),
                "point": r["point_coords"][0],
                "predicted_iou": r["predicted_iou"],
                "stability": r["stability_score"],
            }
            for r in records
        ]
        Path(masks_file).write_text(json.dumps(kept))
    return {
        "times": times,
        "split": splits[len(splits) // 2],
        "masks": len(records),
        "rss_before_mb": rss_before,
        "peak_generate_mb": max(peaks),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "model_class": f"{type(model).__module__}.{type(model).__name__}",
    }


def run_worker(spec: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True, cwd=ROOT
    )
    if proc.returncode != 0:
        raise SystemExit(f"worker failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def agree(path_a: str, path_b: str) -> str:
    """Same count and each mask IoU >= 0.99 with the one at its position; where not, the records
    are matched by point, predicted IoU (within 1e-3) and mask, and those left unmatched on either
    side are listed with their scores: a candidate whose stability score lies a rounding away
    from ``stability_score_thresh`` is kept on one side only, and NMS then keeps or drops its
    neighbours accordingly (records are sorted by predicted IoU, so one such record shifts every
    later position)."""
    from engine.masks import decode_rle

    a, b = json.loads(Path(path_a).read_text()), json.loads(Path(path_b).read_text())
    for records in (a, b):
        for record in records:
            record["mask"] = decode_rle(record["rle"])

    def iou(x, y) -> float:
        union = (x | y).sum()
        return 1.0 if union == 0 else float((x & y).sum() / union)

    if len(a) == len(b):
        worst = min((iou(x["mask"], y["mask"]) for x, y in zip(a, b)), default=1.0)
        if worst >= 0.99:
            return f"yes ({len(a)} masks, worst mask IoU {worst:.4f})"
    unmatched_b = list(range(len(b)))
    only_a, worst = [], 1.0
    for x in a:
        match = next(
            (
                j
                for j in unmatched_b
                if np.allclose(x["point"], b[j]["point"])
                and abs(x["predicted_iou"] - b[j]["predicted_iou"]) < 1e-3
                and iou(x["mask"], b[j]["mask"]) >= 0.99
            ),
            None,
        )
        if match is None:
            only_a.append(x)
        else:
            unmatched_b.remove(match)
            worst = min(worst, iou(x["mask"], b[match]["mask"]))
    only_b = [b[j] for j in unmatched_b]
    if not only_a and not only_b:
        return f"yes, up to order ({len(a)} masks, worst mask IoU {worst:.4f})"

    def listed(records: list[dict]) -> str:
        return "; ".join(
            f"point {r['point']} predicted IoU {r['predicted_iou']:.4f} stability {r['stability']:.5f}"
            for r in records
        )

    return (
        f"NO ({len(a)} vs {len(b)} masks, {len(a) - len(only_a)} matched with mask IoU >= {worst:.4f}; "
        f"only in the first: {listed(only_a) or 'none'}; only in the second: {listed(only_b) or 'none'})"
    )


STAGES = ("encoder", "decoder", "filter", "upsample", "nms", "rle")


def report(label: str, result: dict) -> float:
    median = statistics.median(result["times"])
    split = result["split"]
    known = sum(split.get(s, 0.0) for s in STAGES)
    parts = ", ".join(f"{s} {split.get(s, 0.0):.2f}" for s in STAGES)
    print(
        f"  {label:9s} median {median:8.2f} s  [{parts}, other {median - known:.2f}]  "
        f"masks {result['masks']}  ({result['model_class']})\n"
        f"  {'':9s} RSS loaded {result['rss_before_mb']:.0f} MB, peak while generating "
        f"{result['peak_generate_mb']:.0f} MB (+{result['peak_generate_mb'] - result['rss_before_mb']:.0f}), "
        f"process peak (ru_maxrss) {result['peak_rss_mb']:.0f} MB"
    )
    return median


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    width, height = (int(v) for v in args.size.lower().split("x"))
    print(
        f"automatic masks: model {args.model}, image {width}x{height}, points_per_side "
        f"{args.points_per_side}, crop_n_layers {args.crop_n_layers}, output {args.output_mode}, "
        f"repeats {args.repeats}, torch threads {args.threads or torch.get_num_threads()}, "
        f"malloc thresholds {'glibc' if args.no_tune_malloc else 'tuned'}, "
        f"flush denormal {args.flush_denormal}"
    )
    thresholds = "both" if args.thresholds_zero else args.thresholds
    settings = {"default": [False], "zero": [True], "both": [False, True]}[thresholds]
    which = [args.only] if args.only else ["official", "ours"]
    workloads = ["random", "regions"] if args.workload == "both" else [args.workload]
    with tempfile.TemporaryDirectory() as tmp:
        for workload, zero in [(w, z) for w in workloads for z in settings]:
            label = "thresholds 0" if zero else "default thresholds (0.88 / 0.95)"
            print(f"workload {workload}, {label}:")
            results = {}
            for impl in which:
                spec = {
                    "which": impl, "model": args.model, "size": [width, height],
                    "points_per_side": args.points_per_side, "crop_n_layers": args.crop_n_layers,
                    "repeats": args.repeats, "thresholds_zero": zero, "threads": args.threads,
                    "output_mode": args.output_mode, "workload": workload,
                    "flush_denormal": args.flush_denormal,
                    "tune_malloc": not args.no_tune_malloc,
                    "masks_file": f"{tmp}/{impl}-{workload}-{zero}.json",
                }  # fmt: skip
                results[impl] = report(impl, run_worker(spec))
            if len(results) == 2:
                ratio = results["official"] / results["ours"]
                same = agree(f"{tmp}/official-{workload}-{zero}.json", f"{tmp}/ours-{workload}-{zero}.json")
                print(f"  speed-up {ratio:.2f}x   same results: {same}")
            if args.self_check and "official" in which:
                spec.update(which="official", points_per_batch=32, masks_file=f"{tmp}/official32.json")
                run_worker(spec)
                itself = agree(f"{tmp}/official-{workload}-{zero}.json", f"{tmp}/official32.json")
                print(f"  segment_anything, points_per_batch 64 against 32: same results: {itself}")


if __name__ == "__main__":
    main()
