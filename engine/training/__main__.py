"""``python -m engine.training``: fine-tune a SAM-family model on a folder of masks.

    python -m engine.training --model-type vit_b --checkpoint sam_vit_b_01ec64.pth \\
        --data train/ --val val/ --out new.pth --mode decoder --steps 200

``--data`` / ``--val``: a click-evaluation folder (img/*.jpg + gt/*.png) or SA-1B shards
written by engine.sa1b. With ``--val`` the base and the trained model are evaluated with the
click protocol of engine.evaluation and both rows are printed. Exit status: 0 trained and written,
1 the run stopped early (nothing written), 2 unusable input.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from engine.sam import CheckpointError, build_sam
from engine.training import METRIC_KEYS, TrainConfig, TrainingError, evaluate, save_checkpoint, train
from engine.training.data import load_samples


def _model_config(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    path = Path(text)
    try:
        raw = path.read_text() if not text.lstrip().startswith("{") and path.is_file() else text
        config = json.loads(raw)
    except (OSError, json.JSONDecodeError) as exc:
        raise TrainingError(f"--config is neither a JSON object nor a readable JSON file: {exc}") from exc
    if not isinstance(config, dict):
        raise TrainingError("--config must be a JSON object of model sizes")
    return config


def format_rows(rows: list[tuple[str, dict[str, float]]]) -> str:
    """A plain table: one row per model, the click-protocol metrics as columns."""
    header = f"{'model':<8}" + "".join(f"{key:>9}" for key in METRIC_KEYS)
    lines = [header]
    for name, metrics in rows:
        cells = "".join(
            f"{metrics[key]:>9.4f}" if key.startswith("mIoU") else f"{metrics[key]:>9.2f}"
            for key in METRIC_KEYS
        )
        lines.append(f"{name:<8}{cells}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine.training", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-type", required=True, help="vit_b, vit_l, vit_h, vit_t or custom")
    parser.add_argument("--checkpoint", default=None, help="base weights (default: random, seeded)")
    parser.add_argument("--config", default=None, help="custom model sizes: JSON object or JSON file")
    parser.add_argument("--data", required=True, help="training folder (img/+gt/ or SA-1B shards)")
    parser.add_argument("--val", default=None, help="held-out folder evaluated before and after")
    parser.add_argument("--out", required=True, help="where to write the new checkpoint")
    parser.add_argument("--mode", choices=("decoder", "full"), default="decoder")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=None, help="default 1e-4 (decoder), 3e-4 (full)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N training masks")
    parser.add_argument("--val-limit", type=int, default=None, help="evaluate only the first N objects")
    parser.add_argument("--clicks", type=int, default=20, help="click budget of the evaluation")
    parser.add_argument("--train-prompt-encoder", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--log-every", type=int, default=10, help="progress line every N steps")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        lr = args.lr if args.lr is not None else (1e-4 if args.mode == "decoder" else 3e-4)
        config = TrainConfig(
            mode=args.mode,
            steps=args.steps,
            batch=args.batch,
            lr=lr,
            seed=args.seed,
            device=args.device,
            warmup=min(20, args.steps // 10),
            train_prompt_encoder=args.train_prompt_encoder,
        )
        torch.manual_seed(args.seed)
        model = build_sam(args.model_type, checkpoint=args.checkpoint, config=_model_config(args.config))
        samples = load_samples(args.data, args.limit)
        print(f"{len(samples)} training masks from {args.data}", file=sys.stderr)
        rows = []
        if args.val:
            rows.append(("base", evaluate(model, args.val, clicks=args.clicks, limit=args.val_limit)))

        def report(progress) -> None:
            if progress.step % max(args.log_every, 1) == 0 or progress.step == progress.steps:
                print(
                    f"step {progress.step}/{progress.steps} loss {progress.loss:.4f} "
                    f"{progress.masks_per_second:.1f} masks/s lr {progress.lr:.2e}",
                    file=sys.stderr,
                )

        started = time.perf_counter()
        result = train(model, samples, config, progress=report)
    except (TrainingError, CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for reason in result.skipped:
        print(f"skipped {reason}", file=sys.stderr)
    summary: dict[str, Any] = {"train": result.as_dict(), "seconds": round(time.perf_counter() - started, 2)}
    summary["train"].pop("losses")
    summary["train"]["last_loss"] = result.losses[-1] if result.losses else None
    if not result.completed:
        print(f"stopped: {result.stopped_reason}; no checkpoint written", file=sys.stderr)
        print(json.dumps(summary))
        return 1
    save_checkpoint(model, args.out)
    summary["checkpoint"] = str(args.out)
    if args.val:
        rows.append(("result", evaluate(model, args.val, clicks=args.clicks, limit=args.val_limit)))
        print(format_rows(rows))
        summary["val"] = dict(rows)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
