"""Judging the candidates of a crop the model saw enlarged: a 597x448 second-layer crop of a
1024x768 image (input 1024x768 after resizing), 768 region-like candidates (tests/region_models,
vit_b shape, thresholds 0), through ``MaskGenerator._crop_masks_direct`` (upsample, stability,
boxes, crop-edge test, areas, RLE, the crop's NMS) three ways, back to back in one process:

* segment_anything's way of upsampling: both bilinear resizes (to the padded 1024x1024 frame, to
  the crop), in the 38-mask chunks the 256 MiB ``max_chunk_bytes`` gives;
* the same resizes in cache-sized chunks (``cpu_chunk_bytes``);
* the composed banded map (``engine.automatic.upsampling.ComposedResize``), the default.

The decoder runs once beforehand and is not timed; the encoder's blocks are identity in these
weights, so they are skipped.

    python benchmarks/bench_crop_judging.py [--repeats 3]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.automatic import MaskGenerator
from engine.automatic.amg import generate_crop_boxes
from engine.automatic.judging import Crop
from engine.transforms import ResizeLongestSide
from tests.engine.test_automatic import ours_from, scene
from tests.reference_models import VIT_B_CONFIG
from tests.region_models import region_sam


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    model = ours_from(region_sam(VIT_B_CONFIG), VIT_B_CONFIG)
    image = scene(768, 1024)
    params = dict(points_per_side=32, crop_n_layers=1, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    boxes, _ = generate_crop_boxes(image.shape[:2], 1, MaskGenerator(model, **params).crop_overlap_ratio)
    x0, y0, x1, y1 = boxes[1]
    crop = image[y0:y1, x0:x1]
    resized = ResizeLongestSide(1024).apply_image(crop)
    tensor = torch.as_tensor(resized).permute(2, 0, 1)[None].contiguous()
    with torch.no_grad():
        enc = model.image_encoder
        padded = model.preprocess(tensor)
        features = enc.neck((enc.patch_embed(padded) + enc.pos_embed).permute(0, 3, 1, 2))
        grid = MaskGenerator(model, **params).point_grids[1] * np.array(crop.shape[:2])[None, ::-1]
        batches = [grid[start : start + 64] for start in range(0, 256, 64)]
        crop_info = Crop(features, resized.shape[:2], crop.shape[:2], boxes[1], image.shape[:2])
        decoded = [MaskGenerator(model, **params)._decode(crop_info, points) for points in batches]
        candidates = sum(low.shape[0] for low, _, _ in decoded)
        print(
            f"crop {crop.shape[1]}x{crop.shape[0]} (model input {resized.shape[1]}x{resized.shape[0]}), "
            f"{candidates} candidates, torch threads {torch.get_num_threads()}"
        )
        ways = {
            "two resizes, 256 MiB chunks": dict(cpu_chunk_bytes=256 * 2**20, composed=False),
            "two resizes, 16 MiB chunks": dict(cpu_chunk_bytes=16 * 2**20, composed=False),
            "composed banded map (default)": dict(cpu_chunk_bytes=16 * 2**20, composed=True),
        }
        times: dict[str, list[float]] = {name: [] for name in ways}
        kept = {}
        for _ in range(args.repeats):
            for name, way in ways.items():
                generator = MaskGenerator(model, **params, cpu_chunk_bytes=way["cpu_chunk_bytes"])
                replay = iter(decoded)
                generator._decode = lambda crop, points, replay=replay: next(replay)
                if not way["composed"]:
                    generator._composed_resize = lambda crop: None
                start = time.perf_counter()
                data = generator._crop_masks_direct(crop_info, batches)
                times[name].append(time.perf_counter() - start)
                kept[name] = len(data["rles"])
        base = statistics.median(times["two resizes, 256 MiB chunks"])
        for name, runs in times.items():
            median = statistics.median(runs)
            print(
                f"  {name:31s} median {median:6.2f} s  {1e3 * median / candidates:6.3f} ms per candidate  "
                f"{base / median:5.2f}x  ({kept[name]} kept after the crop's NMS)"
            )


if __name__ == "__main__":
    main()
