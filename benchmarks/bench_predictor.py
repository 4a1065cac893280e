"""Predictor speed on CPU, side by side with the official segment_anything on the same random
weights: set_image (official fp32, ours fp32 / bf16 / int8) and predict for one point, with
medians, ratios, the agreement of bf16/int8 masks with fp32, and the stored embedding size.

    python benchmarks/bench_predictor.py --model vit_b --repeats 3 --predict-repeats 20
    python benchmarks/bench_predictor.py --model small --repeats 1      # seconds, for a smoke run
"""

from __future__ import annotations

import argparse
import copy
import io
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.embeddings import load_embedding, save_embedding
from engine.predictor import Predictor
from engine.sam import build_sam, with_precision
from tests.engine.sam_cases import mean_mask_iou, prompt_cases, random_image
from tests.reference import reference
from tests.reference_models import SMALL_CONFIG, VIT_B_CONFIG, official_sam


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def prompt_outputs(predictor, h: int, w: int) -> list[tuple]:
    return [
        predictor.predict(**kwargs, multimask_output=mm)
        for _, kwargs in prompt_cases(h, w)
        for mm in (True, False)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["vit_b", "small"], default="vit_b")
    parser.add_argument("--repeats", type=int, default=3, help="set_image repeats per variant (median)")
    parser.add_argument("--predict-repeats", type=int, default=20, help="predict repeats (median)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument(
        "--variants",
        default="fp32,bf16,int8",
        help="our precisions to time (comma list); bf16 is emulated (~7x slower) without AVX512-BF16/AMX",
    )
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--width", type=int, default=1024)
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress shows even when piped to a file
    if args.threads:
        torch.set_num_threads(args.threads)
    config = VIT_B_CONFIG if args.model == "vit_b" else SMALL_CONFIG
    h, w = args.height, args.width
    image = random_image(h, w, seed=0)
    point = prompt_cases(h, w)[0][1]

    official_model = official_sam(config, seed=0)
    ours_fp32 = build_sam("custom", config=config)
    ours_fp32.load_state_dict(official_model.state_dict(), strict=True)
    wanted = [v.strip() for v in args.variants.split(",") if v.strip()]
    variants = {"ours fp32": ours_fp32}
    for precision in wanted:
        if precision != "fp32":
            variants[f"ours {precision}"] = with_precision(copy.deepcopy(ours_fp32), precision)
    print(
        f"model {args.model}, image {w}x{h}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"set_image repeats {args.repeats}, predict repeats {args.predict_repeats}, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}"
    )

    official = reference("segment_anything").SamPredictor(official_model)
    set_image_s = {"official fp32": median_seconds(lambda: official.set_image(image), args.repeats)}
    predictors = {}
    for name, model in variants.items():
        predictor = Predictor(model)
        set_image_s[name] = median_seconds(lambda p=predictor: p.set_image(image), args.repeats)
        predictors[name] = predictor

    base = set_image_s["official fp32"]
    print("\nset_image (median s, ratio to official fp32)")
    for name, seconds in set_image_s.items():
        print(f"  {name:14s} {seconds:8.3f} s   {seconds / base:5.2f}x")

    ours = predictors["ours fp32"]
    predict_official = median_seconds(lambda: official.predict(**point), args.predict_repeats)
    predict_ours = median_seconds(lambda: ours.predict(**point), args.predict_repeats)
    print("\npredict, one point, multimask (median ms, ratio to official)")
    print(f"  official       {predict_official * 1e3:8.1f} ms")
    print(f"  ours           {predict_ours * 1e3:8.1f} ms   {predict_ours / predict_official:5.2f}x")

    batch = 64
    gen = torch.Generator().manual_seed(0)
    coords = torch.rand((batch, 1, 2), generator=gen) * torch.tensor(ours.input_size[::-1], dtype=torch.float)
    labels = torch.ones((batch, 1), dtype=torch.int)

    def decode(model, features):
        with torch.no_grad():
            sparse, dense = model.prompt_encoder((coords, labels), None, None)
            model.mask_decoder(features, model.prompt_encoder.get_dense_pe(), sparse, dense, True)

    decoder_repeats = max(1, args.predict_repeats // 5)
    batch_official = median_seconds(lambda: decode(official_model, official.features), decoder_repeats)
    batch_ours = median_seconds(lambda: decode(ours_fp32, ours.features), decoder_repeats)
    print(f"\nprompt encoder + mask decoder, {batch}-prompt batch (median ms, ratio to official)")
    print(f"  official       {batch_official * 1e3:8.1f} ms")
    print(f"  ours           {batch_ours * 1e3:8.1f} ms   {batch_ours / batch_official:5.2f}x")

    reference_outputs = prompt_outputs(ours, h, w)
    official_outputs = prompt_outputs(official, h, w)
    print(f"\nmask agreement over {len(reference_outputs)} prompt sets (mean mask IoU)")
    print(f"  ours fp32 vs official fp32: {mean_mask_iou(reference_outputs, official_outputs):.4f}")
    for name in [n for n in predictors if n != "ours fp32"]:
        agreement = mean_mask_iou(prompt_outputs(predictors[name], h, w), reference_outputs)
        print(f"  {name} vs ours fp32:    {agreement:.4f}")

    buffer = io.BytesIO()
    save_embedding(buffer, ours.get_image_embedding())
    buffer.seek(0)
    fp16_predictor = Predictor(ours_fp32)
    fp16_predictor.set_embedding(load_embedding(buffer), (h, w))
    fp16_iou = mean_mask_iou(prompt_outputs(fp16_predictor, h, w), reference_outputs)
    shape = tuple(ours.get_image_embedding().shape)
    print(
        f"\nembedding {shape} stored as fp16 .npy: {buffer.getbuffer().nbytes} bytes per image; "
        f"decode from fp16 vs fp32 mean mask IoU {fp16_iou:.4f}"
    )


if __name__ == "__main__":
    main()
