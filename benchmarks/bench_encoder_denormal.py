"""engine.sam's image encoder against segment_anything's on the region-like weights of
tests/region_models, with and without torch.set_flush_denormal(True): one call each on a random
1024x1024 input (the region weights make ours meet denormal floats).

    python benchmarks/bench_encoder_denormal.py          # denormals kept
    python benchmarks/bench_encoder_denormal.py --flush  # flushed to zero
"""

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.engine.test_automatic import ours_from
from tests.reference_models import VIT_B_CONFIG
from tests.region_models import region_sam


def main() -> None:
    flush = "--flush" in sys.argv[1:]
    torch.set_flush_denormal(flush)
    official = region_sam(VIT_B_CONFIG)
    ours = ours_from(official, VIT_B_CONFIG)
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for name, model in (("ours", ours), ("official", official)):
            start = time.perf_counter()
            model.image_encoder(x)
            print(f"{name}: {time.perf_counter() - start:.1f} s (flush denormal {flush})", flush=True)


if __name__ == "__main__":
    main()
