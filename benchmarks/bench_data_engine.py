"""The data-engine loop, simulated: a model helps an annotator, the annotator's masks retrain it,
the retrained model is evaluated on held-out objects, gated and promoted, and the next round of
annotation uses it.

The annotator clicks with engine.evaluation's protocol (first click at the object's deepest
point, then at the deepest error) until IoU >= 0.85 or 20 clicks; the accepted mask is the ground
truth (what the annotator ends with, finishing by hand when the model falls short). Each round the
candidate is trained from the active model on every mask collected so far, evaluated with the
click protocol on held-out images that are never trained on, and promoted only when its mIoU@1
is at least the active model's plus ``--margin`` and its NoC@85 not worse by over half a click.

Parts (each prints its table; row 0 is the starting model):
  custom   a small random-weights custom model, full mode (encoder too), synthetic scenes; the
           first round is annotated with the random model. Optionally (--pretrain-images) a
           pre-training round on separate synthetic scenes ("pre") comes first and stays in the
           training set of every round, as public data did in SA-1B's first stage
  vitb     a vit_b-sized decoder (256-d, 64x64 embeddings) with a small random encoder, decoder
           mode from stored fp16 embeddings computed once per image
  coco     the custom model of the first part continued on the COCO-MVal subset, full mode
           (skipped when ../shared/data/coco-mval-subset is absent)

    python benchmarks/bench_data_engine.py                 # all parts
    python benchmarks/bench_data_engine.py --parts custom  # one part
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.evaluation import evaluate_instance
from engine.predictor import Predictor
from engine.sam import build_sam
from engine.training import TrainConfig, TrainingSample, evaluate, train
from engine.training.data import load_click_folder
from engine.training.synthetic import make_samples

COCO = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco-mval-subset"
TARGET_IOU = 0.85
# Shapes of 22-42 % of the side for the custom model (128 px input, 2-pixel low-res mask cells):
# large enough that a model trained for minutes reaches IoU 0.85 in a moderate number of clicks,
# so the annotating cost can fall round by round instead of sitting at the 20-click cap.
RADIUS = (0.22, 0.42)
# The vit_b-sized part keeps the shapes it was measured with.
VITB_RADIUS = (0.18, 0.38)
# Loss settings for random weights: focal : dice = 20 : 1 (the recipe, made for fine-tuning a
# good model) drives a random model to empty masks within a few dozen steps, and the detection
# focal alpha (0.25) does too; from scratch both terms count alike.
FROM_SCRATCH = {"focal_weight": 1.0, "focal_alpha": -1.0}
MAX_CLICKS = 20

CUSTOM_CONFIG = {
    "image_size": 128,
    "patch_size": 8,  # a 16x16 embedding grid, 64x64 low-res masks
    "encoder_embed_dim": 64,
    "encoder_depth": 4,
    "encoder_num_heads": 4,
    "encoder_global_attn_indexes": [1, 3],
    "encoder_window_size": 8,
    "prompt_embed_dim": 64,
    "mask_in_chans": 16,
    "decoder_mlp_dim": 256,
    "decoder_num_heads": 4,
    "iou_head_hidden_dim": 64,
}
# vit_b's prompt encoder and mask decoder (256-d, 64x64 embedding grid); a small encoder stands
# in for vit_b's, whose random features would cost seconds per image here and mean no more.
VITB_DECODER_CONFIG = {
    "image_size": 1024,
    "patch_size": 16,
    "encoder_embed_dim": 64,
    "encoder_depth": 2,
    "encoder_num_heads": 2,
    "encoder_global_attn_indexes": [1],
    "encoder_window_size": 14,
}


@torch.no_grad()
def annotate(model: torch.nn.Module, samples: list[TrainingSample]) -> list[int]:
    """Clicks the simulated annotator needs per object with ``model``'s help."""
    model.eval()
    predictor = Predictor(model)
    clicks, current = [], None
    for sample in samples:
        key = sample.image_key or sample.name
        if key != current:
            if sample.embedding is not None:
                predictor.set_embedding(torch.as_tensor(sample.embedding).float(), sample.mask.shape)
            else:
                predictor.set_image(sample.image)
            current = key
        result = evaluate_instance(predictor, sample.mask, max_clicks=MAX_CLICKS)
        clicks.append(result.noc(TARGET_IOU, MAX_CLICKS))
    return clicks


def gate(candidate: dict, active: dict, margin: float) -> tuple[bool, str]:
    """Promote on mIoU@1 better by ``margin`` unless NoC@85 gets worse by more than half a click."""
    if candidate["mIoU@1"] < active["mIoU@1"] + margin:
        return False, f"mIoU@1 {candidate['mIoU@1']:.3f} < active {active['mIoU@1']:.3f} + {margin}"
    if candidate["NoC@85"] > active["NoC@85"] + 0.5:
        return False, f"NoC@85 {candidate['NoC@85']:.2f} worse than active {active['NoC@85']:.2f}"
    return True, "better"


def run_loop(
    title: str,
    model: torch.nn.Module,
    rounds: list[list[TrainingSample]],
    heldout: list[TrainingSample],
    config_for: Callable[[int], TrainConfig],
    margin: float,
    base: list[TrainingSample] | None = None,
    pretrain: TrainConfig | None = None,
) -> torch.nn.Module:
    """Annotate → train → evaluate → gate → promote, once per entry of ``rounds``; ``base``
    (a pre-training set) is trained on first with ``pretrain`` and stays in every retraining."""
    base = base or []
    held_keys = {s.image_key for s in heldout}
    trained_keys = {s.image_key for r in rounds for s in r} | {s.image_key for s in base}
    assert not held_keys & trained_keys, "a held-out image is in training"
    print(f"\n== {title}: {len(heldout)} held-out objects, {sum(map(len, rounds))} to annotate", flush=True)
    active = evaluate(model, heldout, clicks=MAX_CLICKS)
    columns = ("round", 5), ("masks", 6), ("total", 6), ("clicks/mask", 11), ("mIoU@1", 7), ("NoC@85", 7)
    print(" ".join(f"{name:>{width}}" for name, width in columns) + f" {'train s':>8} {'mIoU@5':>7}  gate")
    print(
        f"{0:>5} {0:>6} {0:>6} {'-':>11} {active['mIoU@1']:>7.3f} {active['NoC@85']:>7.2f} {'-':>8} "
        f"{active['mIoU@5']:>7.3f}  start"
    )
    if base and pretrain is not None:
        started = time.perf_counter()
        result = train(model, base, pretrain)
        active = evaluate(model, heldout, clicks=MAX_CLICKS)
        print(
            f"{'pre':>5} {len(base):>6} {len(base):>6} {'-':>11} {active['mIoU@1']:>7.3f} "
            f"{active['NoC@85']:>7.2f} {time.perf_counter() - started:>8.1f} {active['mIoU@5']:>7.3f}  "
            f"pre-trained ({result.masks_per_second:.1f} masks/s)",
            flush=True,
        )
    collected: list[TrainingSample] = []
    for number, batch in enumerate(rounds, start=1):
        clicks = annotate(model, batch)
        collected += batch
        candidate = copy.deepcopy(model)
        started = time.perf_counter()
        result = train(candidate, base + collected, config_for(number))
        seconds = time.perf_counter() - started
        metrics = evaluate(candidate, heldout, clicks=MAX_CLICKS)
        promoted, why = gate(metrics, active, margin) if result.completed else (False, result.stopped_reason)
        if promoted:
            model, active = candidate, metrics
        print(
            f"{number:>5} {len(batch):>6} {len(collected):>6} {np.mean(clicks):>11.2f} "
            f"{active['mIoU@1']:>7.3f} {active['NoC@85']:>7.2f} {seconds:>8.1f} {active['mIoU@5']:>7.3f}  "
            f"{'promoted' if promoted else 'kept: ' + why}"
            f" (candidate mIoU@1 {metrics['mIoU@1']:.3f}, {result.masks_per_second:.1f} masks/s)",
            flush=True,
        )
    return model


def split_rounds(samples: list[TrainingSample], rounds: int, per_round: int) -> list[list[TrainingSample]]:
    return [samples[i * per_round : (i + 1) * per_round] for i in range(rounds)]


def scene_objects(objects: int, seed: int, prefix: str) -> list[TrainingSample]:
    """The first ``objects`` objects of synthetic scenes (1-3 shapes each; occluded ones dropped)."""
    samples = make_samples(math.ceil(objects / 1.5) + 4, seed=seed, prefix=prefix, radius=RADIUS)
    if len(samples) < objects:
        raise SystemExit(f"only {len(samples)} objects generated for {objects}; use fewer")
    return samples[:objects]


def custom_part(args: argparse.Namespace) -> torch.nn.Module:
    torch.manual_seed(args.seed)
    model = build_sam("custom", config=CUSTOM_CONFIG)
    base = make_samples(args.pretrain_images, seed=args.seed + 5, prefix="pre", radius=RADIUS)
    pool = scene_objects(args.rounds * args.per_round, args.seed + 1, "train")
    heldout = make_samples(args.heldout_images, seed=args.seed + 2, prefix="held", radius=RADIUS)
    rounds = split_rounds(pool, args.rounds, args.per_round)

    def config(steps: int, warmup: int, point_rounds: int, mask_rounds: int, lr: float) -> TrainConfig:
        return TrainConfig(
            mode="full",
            steps=steps,
            batch=8,
            lr=lr,
            encoder_lr=lr / 10,
            warmup=warmup,
            seed=args.seed,
            point_rounds=point_rounds,
            mask_rounds=mask_rounds,
            **FROM_SCRATCH,
        )

    return run_loop(
        "custom model, full mode, synthetic scenes",
        model,
        rounds,
        heldout,
        lambda number: config(args.steps, 10, args.point_rounds, 1, args.lr * args.round_lr ** (number - 1)),
        args.margin,
        base=base,
        pretrain=config(args.pretrain_steps, 10, 1, 0, args.lr) if base else None,
    )


@torch.no_grad()
def with_embeddings(model: torch.nn.Module, samples: list[TrainingSample]) -> list[TrainingSample]:
    """The samples with their image's fp16 embedding, computed once per image (the store)."""
    predictor, stored, out = Predictor(model), {}, []
    for sample in samples:
        if sample.image_key not in stored:
            predictor.set_image(sample.image)
            stored[sample.image_key] = predictor.get_image_embedding().half()
        out.append(
            TrainingSample(
                mask=sample.mask,
                embedding=stored[sample.image_key],
                name=sample.name,
                image_key=sample.image_key,
            )
        )
    return out


def vitb_part(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    model = build_sam("custom", config=VITB_DECODER_CONFIG)
    started = time.perf_counter()
    pool = with_embeddings(
        model, make_samples(args.vitb_images, seed=args.seed + 3, prefix="vtrain", radius=VITB_RADIUS)
    )
    heldout = with_embeddings(
        model, make_samples(args.vitb_heldout_images, seed=args.seed + 4, prefix="vheld", radius=VITB_RADIUS)
    )
    print(
        f"\n(vit_b-sized: {len(pool) + len(heldout)} objects, their images embedded once in "
        f"{time.perf_counter() - started:.0f} s)"
    )
    rounds = split_rounds(pool, args.vitb_rounds, len(pool) // args.vitb_rounds)

    def config_for(_round: int) -> TrainConfig:
        return TrainConfig(
            mode="decoder",
            steps=args.vitb_steps,
            batch=2,
            lr=args.vitb_lr,
            warmup=5,
            seed=args.seed,
            point_rounds=args.point_rounds,
            mask_rounds=1,
            train_prompt_encoder=True,
            min_samples=4,
            **FROM_SCRATCH,
        )

    run_loop(
        "vit_b-sized decoder, decoder mode from stored embeddings",
        model,
        rounds,
        heldout,
        config_for,
        args.margin,
    )


def coco_part(args: argparse.Namespace, model: torch.nn.Module) -> None:
    if not COCO.is_dir():
        print(f"\n== COCO-MVal part skipped: {COCO} is absent")
        return
    samples = load_click_folder(COCO)
    # Several objects share a COCO image (the name ends in its id): split by image.
    for sample in samples:
        sample.image_key = sample.name.rsplit("_", 1)[-1]
    images = sorted({s.image_key for s in samples})
    held_images = set(images[::4])
    heldout = [s for s in samples if s.image_key in held_images]
    pool = [s for s in samples if s.image_key not in held_images]
    rounds = split_rounds(pool, args.rounds, len(pool) // args.rounds)

    def config_for(_round: int) -> TrainConfig:
        return TrainConfig(
            mode="full",
            encoder_lr=args.lr / 30,
            **FROM_SCRATCH,
            steps=args.coco_steps,
            batch=8,
            lr=args.lr / 3,
            warmup=5,
            seed=args.seed,
            point_rounds=args.point_rounds,
            mask_rounds=1,
        )

    run_loop(
        "COCO-MVal subset, custom model from the synthetic part, full mode",
        model,
        rounds,
        heldout,
        config_for,
        args.margin,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="custom,vitb,coco")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--per-round", type=int, default=200, help="objects annotated per round")
    parser.add_argument("--heldout-images", type=int, default=100, help="held-out synthetic scenes")
    parser.add_argument(
        "--pretrain-images", type=int, default=0, help="synthetic pre-training scenes (0: start from random)"
    )
    parser.add_argument("--pretrain-steps", type=int, default=800, help="one point, no refinement rounds")
    parser.add_argument("--steps", type=int, default=600, help="training steps per round (custom)")
    parser.add_argument("--lr", type=float, default=3e-3, help="rate of round 1 (encoder: a tenth)")
    parser.add_argument("--round-lr", type=float, default=1.0, help="rate factor from one round to the next")
    parser.add_argument("--point-rounds", type=int, default=2, help="error-region point rounds")
    parser.add_argument("--vitb-images", type=int, default=16)
    parser.add_argument("--vitb-heldout-images", type=int, default=4)
    parser.add_argument("--vitb-rounds", type=int, default=3)
    parser.add_argument("--vitb-steps", type=int, default=10)
    parser.add_argument("--vitb-lr", type=float, default=1e-3)
    parser.add_argument("--coco-steps", type=int, default=30)
    parser.add_argument("--margin", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: robust on a shared box)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    parts = set(args.parts.split(","))
    started = time.perf_counter()
    model = None
    if "custom" in parts or "coco" in parts:
        model = custom_part(args)
    if "vitb" in parts:
        vitb_part(args)
    if "coco" in parts and model is not None:
        coco_part(args, model)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
