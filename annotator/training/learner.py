"""The platform's only contact with ``engine.training``: building models, turning selected masks
into the engine's samples, training, the click evaluation and writing checkpoints. Kept in one
module so a change of the engine's API is a change here."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotator.training.config import TrainingSettings
from annotator.training.data import Item
from annotator.training.models import ModelVersion
from annotator.training.services import checkpoint_path, seeded_for


def min_samples() -> int:
    from engine.training import MIN_SAMPLES

    return int(MIN_SAMPLES)


def training_errors() -> tuple[type[BaseException], ...]:
    """What a run reports as its failure reason (bad data, a wrong checkpoint) rather than a crash."""
    from engine.training import CheckpointError, TrainingError

    return (TrainingError, CheckpointError, FileNotFoundError, ValueError)


def build(version: ModelVersion) -> Any:
    """The version's model in fp32; a checkpoint-less ``custom`` version gets the seeded random
    weights every process gives it, so it matches the embeddings stored for it."""
    from engine.sam import build_sam

    checkpoint = checkpoint_path(version)
    with seeded_for(version, active=checkpoint is None):
        return build_sam(version.family, checkpoint=checkpoint, config=version.config or None)


def clone(model: Any) -> Any:
    return copy.deepcopy(model)


def samples(items: list[Item]) -> list[Any]:
    """Engine samples; the masks of one image share its embedding or pixels (read once)."""
    from engine.training import TrainingSample

    return [
        TrainingSample(
            mask=item.mask,
            embedding=item.embedding,
            image=item.pixels if item.embedding is None else None,
            name=f"mask {item.mask_id}",
            image_key=f"image-{item.image_id}",
        )
        for item in items
    ]


@dataclass
class Outcome:
    loss: list[list[float]]  # [step, loss]
    masks_per_second: float | None
    stopped: str  # why it stopped early (NaN loss ...), "" when it ran to the end
    steps: int
    seconds: float | None


def train(
    model: Any,
    data: list[Any],
    config: TrainingSettings,
    device: str,
    progress: Callable[[int, int, float], None],
    *,
    min_masks: int,
) -> Outcome:
    """Train ``model`` in place; ``progress(step, total, loss)`` is called as it goes."""
    from engine.training import TrainConfig
    from engine.training import train as engine_train

    train_config = TrainConfig(
        mode=config.mode,
        steps=config.steps,
        batch=config.batch,
        lr=config.lr,
        seed=config.seed,
        point_rounds=config.point_rounds,
        mask_rounds=config.mask_rounds,
        device=device,
        min_samples=min_masks,
    )

    def report(event: Any) -> None:
        step, loss = _get(event, "step"), _get(event, "loss")
        progress(int(step or 0), config.steps, float(loss) if loss is not None else float("nan"))

    result = engine_train(model, data, train_config, progress=report)
    curve = [
        [float(s), float(v)] for s, v in _curve(_get(result, "loss_curve") or _get(result, "losses") or [])
    ]
    return Outcome(
        loss=curve,
        masks_per_second=_float(_get(result, "masks_per_second")),
        stopped=str(_get(result, "stopped_reason") or ""),
        steps=int(_get(result, "steps_done") or len(curve)),
        seconds=_float(_get(result, "seconds")),
    )


def evaluate(model: Any, data: list[Any], *, max_clicks: int) -> dict[str, float]:
    """The click protocol's mIoU@k / NoC@k (engine.training.METRIC_KEYS) and instance counts."""
    from engine.training import evaluate as engine_evaluate

    metrics = engine_evaluate(model, data, clicks=max_clicks)
    return {str(k): float(v) for k, v in dict(metrics).items() if isinstance(v, (int, float))}


def save(model: Any, path: Path) -> None:
    """Atomic: the engine writes a temporary file beside ``path`` and renames it when complete."""
    from engine.training import save_checkpoint

    save_checkpoint(model, path)


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def _curve(values: Any) -> list[tuple[float, float]]:
    out = []
    for i, v in enumerate(values):
        if isinstance(v, (list, tuple)) and len(v) == 2:
            out.append((v[0], v[1]))
        else:
            out.append((i + 1, v))
    return out
