"""One click's decoder, three ways, interleaved in one process: segment_anything's mask decoder,
engine.sam's plain ``MaskDecoder`` call, and the prepared image side (``engine.sam.prepared``,
what the web process runs), plus where the prepared decoder's time goes and what decoding several
clicks in one call costs per click.

The variants run in turns (one call each, round after round), so a change in the machine's speed
during the run hits them alike; the figures are medians. Same weights (a vit_b-sized model with
seeded random weights), same random embedding, a 1024x768 image's prompts.

    python benchmarks/bench_click_decoder.py [--rounds 40] [--threads CPUS] [--no-tune-malloc]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def interleaved(variants: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median milliseconds of each variant, called in turns."""
    for fn in variants.values():
        fn()
    times: dict[str, list[float]] = defaultdict(list)
    for _ in range(rounds):
        for name, fn in variants.items():
            started = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - started) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def click_variants(
    official, model, ready, features, points, mask, multimask
) -> dict[str, Callable[[], object]]:
    """The three ways of decoding one click, each with its own prompt encoding as a click would."""
    from engine.sam import prepared

    official_pe = official.prompt_encoder.get_dense_pe()
    dense_pe = model.prompt_encoder.get_dense_pe()

    def reference() -> object:
        sparse, dense = official.prompt_encoder(points=points, boxes=None, masks=mask)
        return official.mask_decoder(features, official_pe, sparse, dense, multimask)

    def plain() -> object:
        sparse, dense = model.prompt_encoder(points=points, boxes=None, masks=mask)
        return model.mask_decoder(features, dense_pe, sparse, dense, multimask)

    def prepared_side() -> object:
        sparse, _ = model.prompt_encoder(points=points, boxes=None, masks=None)
        return prepared.decode(model, ready, sparse, mask, multimask)

    return {"segment_anything": reference, "engine.sam plain": plain, "engine.sam prepared": prepared_side}


def phase_split(model, ready, sparse, rounds: int) -> dict[str, float]:
    """The prepared decoder's parts, timed one after another (medians)."""
    import torch

    from engine.sam import prepared

    decoder, transformer = model.mask_decoder, model.mask_decoder.transformer
    consts = prepared.model_constants(model)
    selected = decoder.selected_masks(True)
    rows = decoder.output_rows(selected)
    times: dict[str, list[float]] = defaultdict(list)
    with torch.inference_mode():
        for _ in range(rounds + 3):
            marks = [time.perf_counter()]
            tokens = decoder.output_tokens(sparse)
            queries, keys = prepared._first_layer_forward(
                transformer.layers[0], tokens, ready.tokens, ready.keys, ready.values, ready.queries, False
            )
            marks.append(time.perf_counter())
            for layer in transformer.layers[1:]:
                queries, keys = layer(queries, keys, tokens, consts.pe_last, keys_owned=True)
            marks.append(time.perf_counter())
            hs, _ = transformer.run_layers(
                queries, keys, tokens, consts.pe_last, start=len(transformer.layers), rows=rows
            )
            marks.append(time.perf_counter())
            decoder.heads(hs, keys, *ready.grid, selected)
            marks.append(time.perf_counter())
            for name, start, end in zip(
                ("first layer", "later layers", "final attention", "heads + upscaling"), marks, marks[1:]
            ):
                times[name].append((end - start) * 1000)
    return {name: statistics.median(values[3:]) for name, values in times.items()}


def batched_per_click(
    model, ready, points, mask, multimask, rounds: int, sizes=(1, 2, 4)
) -> dict[int, float]:
    """Milliseconds per click when ``size`` clicks on the image are decoded in one call (the
    prompts stacked on the batch axis): what coalescing the clicks waiting on the model thread
    would cost the decoder per click."""
    import torch

    from engine.sam import prepared

    sparse, _ = model.prompt_encoder(points=points, boxes=None, masks=None)
    variants = {}
    for size in sizes:
        stacked = sparse.expand(size, -1, -1).contiguous()
        masks = None if mask is None else mask.expand(size, -1, -1, -1).contiguous()
        variants[size] = lambda s=stacked, m=masks: prepared.decode(model, ready, s, m, multimask)
    with torch.inference_mode():
        figures = interleaved(variants, rounds)
    return {size: ms / size for size, ms in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch intra-op threads")
    parser.add_argument("--no-tune-malloc", action="store_true", help="keep glibc's malloc thresholds")
    args = parser.parse_args()

    import torch

    from engine.runtime import tune_malloc

    tuned = tune_malloc(enabled=not args.no_tune_malloc)
    torch.set_num_threads(args.threads)
    from engine.sam import build_sam, prepared
    from engine.transforms import ResizeLongestSide
    from tests.reference_models import VIT_B_CONFIG, official_sam

    official = official_sam(VIT_B_CONFIG, seed=0)
    model = build_sam("custom", config=dict(VIT_B_CONFIG))
    model.load_state_dict(official.state_dict())
    model.eval()
    features = torch.randn((1, 256, 64, 64), generator=torch.Generator().manual_seed(0))
    transform = ResizeLongestSide(1024)
    first = torch.as_tensor(transform.apply_coords([[400.0, 300.0]], (768, 1024)), dtype=torch.float)[None]
    second = torch.as_tensor(
        transform.apply_coords([[400.0, 300.0], [520.0, 330.0]], (768, 1024)), dtype=torch.float
    )[None]
    clicks = {
        "first click (1 point, 3 masks)": ((first, torch.tensor([[1]])), None, True),
        "refinement (2 points + logits, 1 mask)": (
            (second, torch.tensor([[1, 0]])),
            torch.randn((1, 1, 256, 256), generator=torch.Generator().manual_seed(1)) * 8,
            False,
        ),
    }
    prepared.prepare_image(model, features)  # the first call also computes the model's constants
    started = time.perf_counter()
    ready = prepared.prepare_image(model, features)
    prepare_ms = (time.perf_counter() - started) * 1000
    print(
        f"one click's prompt encoder + mask decoder, vit_b-sized random weights, torch threads "
        f"{args.threads}, malloc tuned: {tuned}, medians of {args.rounds} interleaved rounds"
    )
    print(f"  preparing the image side once: {prepare_ms:.1f} ms")
    with torch.inference_mode():
        for label, (points, mask, multimask) in clicks.items():
            variants = click_variants(official, model, ready, features, points, mask, multimask)
            figures = interleaved(variants, args.rounds)
            base = figures["segment_anything"]
            print(f"  {label}:")
            for name, ms in figures.items():
                print(f"    {name:<22} {ms:7.2f} ms   {base / ms:4.2f}x")
        sparse, _ = model.prompt_encoder(
            points=clicks["first click (1 point, 3 masks)"][0], boxes=None, masks=None
        )
    split = phase_split(model, ready, sparse, args.rounds)
    print("  prepared first click, by part: " + ", ".join(f"{k} {v:.2f} ms" for k, v in split.items()))
    for label, (points, mask, multimask) in clicks.items():
        per_click = batched_per_click(model, ready, points, mask, multimask, args.rounds)
        print(
            f"  {label}, several in one decoder call, per click: "
            + ", ".join(f"{size} clicks {ms:.2f} ms" for size, ms in per_click.items())
        )


if __name__ == "__main__":
    main()
