"""Click-protocol figures (mIoU@1/3/5, NoC@85/90, failures) of the classic segmenter — or of a SAM
checkpoint — on the COCO-MVal subset: a thin wrapper over ``python -m engine.evaluation``.

    python benchmarks/eval_clicks.py                      # classic, all 160 instances
    python benchmarks/eval_clicks.py --limit 20           # quick look
    python benchmarks/eval_clicks.py --model-type vit_b --checkpoint sam_vit_b_01ec64.pth
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.evaluation import main

DEFAULT_DATASET = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco-mval-subset"

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--dataset" not in argv:
        shared = Path("/work/shared/data/coco-mval-subset")
        dataset = DEFAULT_DATASET if DEFAULT_DATASET.is_dir() else shared
        argv = ["--dataset", str(dataset), *argv]
    raise SystemExit(main(argv))
