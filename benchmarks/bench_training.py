"""Training throughput (masks/s) in decoder mode from stored fp16 embeddings against a loop that
runs the frozen image encoder on every step (what lightning-sam-style fine-tunes do), side by
side in one run, with the same recipe, model, data and seed.

    python benchmarks/bench_training.py                        # vit_b, random weights
    python benchmarks/bench_training.py --model-type custom    # a tiny model, seconds

Both rows train the same parameters (mask decoder) with the full interactive recipe; the only
difference is where the image embedding comes from. The stored-embedding row also says what
computing the embeddings once cost (the platform does that on the ``embed`` queue anyway).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.predictor import Predictor
from engine.sam import build_sam
from engine.training import TrainConfig, TrainingSample, train
from engine.training.synthetic import make_samples

TINY = {
    "image_size": 128,
    "patch_size": 16,
    "encoder_embed_dim": 32,
    "encoder_depth": 2,
    "encoder_num_heads": 2,
    "encoder_global_attn_indexes": [1],
    "encoder_window_size": 4,
    "prompt_embed_dim": 32,
    "decoder_mlp_dim": 64,
    "decoder_num_heads": 2,
    "iou_head_hidden_dim": 32,
}


@torch.no_grad()
def stored(model: torch.nn.Module, samples: list[TrainingSample]) -> list[TrainingSample]:
    """The samples with their image's fp16 embedding (computed once per image: the store)."""
    predictor, cache, out = Predictor(model), {}, []
    for sample in samples:
        if sample.image_key not in cache:
            predictor.set_image(sample.image)
            cache[sample.image_key] = predictor.get_image_embedding().half()
        out.append(TrainingSample(mask=sample.mask, embedding=cache[sample.image_key], name=sample.name))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-type", default="vit_b", help="vit_b, vit_l, vit_h or custom (tiny)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--images", type=int, default=2, help="synthetic scenes (objects: about 2 each)")
    parser.add_argument("--image-size", type=int, default=256, help="side of the synthetic scenes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: robust on a shared box)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = TINY if args.model_type == "custom" else None
    model = build_sam(args.model_type, config=config).to(args.device)
    samples = make_samples(args.images, seed=0, size=args.image_size)[: max(args.batch * args.steps, 2)]
    common = {"steps": args.steps, "batch": args.batch, "seed": 0, "min_samples": 1, "device": args.device}

    started = time.perf_counter()
    with_embeddings = stored(model, samples)
    embed_seconds = time.perf_counter() - started
    images = len({s.image_key for s in samples})
    fast = train(model, with_embeddings, TrainConfig(**common))
    torch.manual_seed(0)
    model = build_sam(args.model_type, config=config).to(args.device)
    slow = train(model, samples, TrainConfig(**common, embed_each_step=True))

    print(
        f"{args.model_type}, {len(samples)} masks on {images} images, {args.steps} steps x batch {args.batch}"
    )
    print(f"{'source of the embedding':<34} {'masks/s':>8} {'s/step':>8} {'encoder runs':>13}")
    for name, result, runs in (
        ("stored fp16 (decoder mode)", fast, 0),
        ("frozen encoder every step", slow, args.steps * args.batch),
    ):
        per_step = (
            result.steps_done * args.batch / max(result.masks_per_second, 1e-9) / max(result.steps_done, 1)
        )
        print(f"{name:<34} {result.masks_per_second:>8.2f} {per_step:>8.2f} {runs:>13}")
    speedup = fast.masks_per_second / max(slow.masks_per_second, 1e-9)
    print(
        f"speed-up {speedup:.1f}x; storing the embeddings once took {embed_seconds:.1f} s for {images} "
        "images (the platform's embed queue does that anyway)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
