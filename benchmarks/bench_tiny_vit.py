"""TinyViT (vit_t) image-encoder time, Maskmill vs MobileSAM's published code, on the same seeded
random weights and the same 1024×1024 input, in one run. Runs alternate between the two so
that load from other processes hits both alike; prints medians and the ratio of wall time and
of this process's CPU time (the steadier figure on a machine shared with other work).

    python benchmarks/bench_tiny_vit.py [--repeats 7] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.sam.tiny_vit import TinyViT
from tests.reference import reference
from tests.reference_models import randomize_


def build_pair(seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    tiny_vit_sam = reference("mobile_sam.modeling.tiny_vit_sam")
    official = tiny_vit_sam.TinyViT(
        img_size=1024,
        embed_dims=[64, 128, 160, 320],
        depths=[2, 2, 6, 2],
        num_heads=[2, 4, 5, 10],
        window_sizes=[7, 7, 14, 7],
        drop_path_rate=0.0,
        layer_lr_decay=0.8,
    )
    randomize_(official, seed)
    with torch.no_grad():
        for name, buffer in official.named_buffers():
            if name.endswith("running_var"):
                buffer.abs_().add_(0.5)
    official.eval()  # MobileSAM caches its attention bias table on eval(): after randomising
    ours = TinyViT().eval()
    ours.load_state_dict(official.state_dict())
    return ours, official


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    ours, official = build_pair()
    image = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(1))
    times: dict[str, list[float]] = {"maskmill": [], "mobile_sam": []}
    cpu: dict[str, list[float]] = {"maskmill": [], "mobile_sam": []}
    with torch.inference_mode():
        out_ours, out_official = ours(image), official(image)  # warm-up, and the agreement check
        for _ in range(args.repeats):
            for name, model in (("maskmill", ours), ("mobile_sam", official)):
                start, start_cpu = time.perf_counter(), time.process_time()
                model(image)
                times[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)

    median = {name: statistics.median(values) for name, values in times.items()}
    median_cpu = {name: statistics.median(values) for name, values in cpu.items()}
    print(f"TinyViT encoder, 1×3×1024×1024, fp32, {torch.get_num_threads()} threads, {args.repeats} repeats")
    print(f"{'':12s} {'wall median s':>14s} {'wall min s':>11s} {'CPU median s':>13s}")
    for name in times:
        print(f"{name:12s} {median[name]:14.3f} {min(times[name]):11.3f} {median_cpu[name]:13.3f}")
    print(
        f"ratio maskmill/mobile_sam: wall {median['maskmill'] / median['mobile_sam']:.2f}×, "
        f"CPU {median_cpu['maskmill'] / median_cpu['mobile_sam']:.2f}×"
    )
    print(f"max |Δ| of the embeddings: {(out_ours - out_official).abs().max().item():.2e}")


if __name__ == "__main__":
    main()
