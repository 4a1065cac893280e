"""Judging automatic-mask candidates at vit_b scale: the stability score and box of 192
region-like candidates (tests/region_models, 1024x768 image), from their full-resolution logits
(segment_anything's way: upsample to 1024x1024, unpad, count) against the cells of the low-res
logits (engine.automatic.upsampling, what MaskGenerator does for such crops). Same process, back
to back; the encoder's blocks are identity in these weights, so they are skipped here.

    python benchmarks/bench_automatic_judging.py
"""

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.automatic.decoding import decode_points
from engine.automatic.upsampling import axis_plan, threshold_stats, truncated_plan, upsample_to_model_frame
from engine.masks import masks_to_boxes, stability_score
from engine.transforms import ResizeLongestSide
from tests.engine.test_automatic import ours_from, scene
from tests.reference_models import VIT_B_CONFIG
from tests.region_models import region_sam


def main() -> None:
    model = ours_from(region_sam(VIT_B_CONFIG), VIT_B_CONFIG)
    image = scene(768, 1024)
    x = torch.as_tensor(ResizeLongestSide(1024).apply_image(image)).permute(2, 0, 1)[None].contiguous()
    with torch.no_grad():
        enc = model.image_encoder
        features = enc.neck((enc.patch_embed(model.preprocess(x)) + enc.pos_embed).permute(0, 3, 1, 2))
        points = torch.rand(64, 2, generator=torch.Generator().manual_seed(0)) * torch.tensor([1024.0, 768.0])
        low, _, _ = decode_points(model, features, points)
        low = low.flatten(0, 1)
        rows, cols = truncated_plan(axis_plan(256, 1024), 768), truncated_plan(axis_plan(256, 1024), 1024)
        for _ in range(3):
            start = time.perf_counter()
            logits = upsample_to_model_frame(low, 1024, (768, 1024))
            stability_score(logits, 0.0, 1.0)
            masks_to_boxes(logits > 0)
            del logits
            full = time.perf_counter() - start
            start = time.perf_counter()
            threshold_stats(low, rows, cols, (-1.0, 0.0, 1.0), 0.0)
            cells = time.perf_counter() - start
            print(
                f"{len(low)} candidates: full-resolution {full:.2f} s, low-res cells {cells:.2f} s, "
                f"{full / cells:.2f}x"
            )


if __name__ == "__main__":
    main()
