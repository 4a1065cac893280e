"""A project's training settings (``Project.settings["training"]``), parsed once and defensively:
an unknown key or a value out of range is refused with the key's name, never half-applied."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from django.core.exceptions import ValidationError

# Metrics the gate may compare; lower is better for the NoC ones.
GATE_METRICS = ("mIoU@1", "mIoU@3", "mIoU@5", "NoC@85", "NoC@90")  # engine.training's keys
LOWER_IS_BETTER = {"NoC@85", "NoC@90"}


@dataclass(frozen=True)
class TrainingSettings:
    accepted_masks_threshold: int = 0  # 0: no threshold trigger
    promotion_metric: str = "mIoU@1"
    promotion_margin: float = 0.005  # the candidate must beat the active version by this much
    mode: str = "decoder"  # decoder | full
    steps: int = 200
    batch: int = 4
    lr: float = 1e-4
    seed: int = 0
    point_rounds: int = 8  # the SAM recipe's interactive rounds after the first prompt ...
    mask_rounds: int = 2  # ... and the mask-only ones
    max_train_masks: int = 2000  # bounded work per run; newest accepted masks first
    max_val_masks: int = 200
    min_masks: int = 0  # 0: the engine's minimum
    include_auto: bool = False  # automatic masks (accepted) join the training data ...
    auto_min_iou: float = 0.9  # ... when their predicted IoU and stability are at least these
    auto_min_stability: float = 0.95
    max_clicks: int = 20  # clicks per mask in the gate's evaluation (the protocol's 20)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_BOUNDS: dict[str, tuple[float, float]] = {
    "accepted_masks_threshold": (0, 10_000_000),
    "promotion_margin": (-1.0, 100.0),
    "steps": (1, 1_000_000),
    "batch": (1, 1024),
    "lr": (1e-9, 1.0),
    "seed": (0, 2**31 - 1),
    "point_rounds": (0, 32),
    "mask_rounds": (0, 32),
    "max_train_masks": (1, 1_000_000),
    "max_val_masks": (1, 100_000),
    "min_masks": (0, 1_000_000),
    "auto_min_iou": (0.0, 1.0),
    "auto_min_stability": (0.0, 1.0),
    "max_clicks": (5, 20),
}


def parse_training_settings(value: Any, *, field: str = "settings") -> TrainingSettings:
    """The settings with defaults for what ``value`` lacks; ValidationError naming the bad key."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ValidationError({field: "training must be a JSON object"})
    known = {f.name: f for f in fields(TrainingSettings)}
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise ValidationError({field: f"training: unknown key(s) {', '.join(unknown)}"})
    parsed: dict[str, Any] = {}
    for name, raw in value.items():
        default = known[name].default
        if isinstance(default, bool):
            if not isinstance(raw, bool):
                raise ValidationError({field: f"training.{name} must be true or false"})
        elif isinstance(default, (int, float)):
            if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw != raw:
                raise ValidationError({field: f"training.{name} must be a number"})
            if isinstance(default, int) and raw != int(raw):
                raise ValidationError({field: f"training.{name} must be a whole number"})
            low, high = _BOUNDS[name]
            if not low <= raw <= high:
                raise ValidationError({field: f"training.{name} must be between {low:g} and {high:g}"})
            raw = int(raw) if isinstance(default, int) else float(raw)
        parsed[name] = raw
    if parsed.get("mode", "decoder") not in ("decoder", "full"):
        raise ValidationError({field: "training.mode must be 'decoder' or 'full'"})
    if "promotion_metric" in parsed:
        wanted = str(parsed["promotion_metric"]).lower()
        match = [name for name in GATE_METRICS if name.lower() == wanted]
        if not match:
            names = ", ".join(GATE_METRICS)
            raise ValidationError({field: f"training.promotion_metric must be one of {names}"})
        parsed["promotion_metric"] = match[0]
    return TrainingSettings(**parsed)


def training_settings(project: Any, overrides: dict[str, Any] | None = None) -> TrainingSettings:
    """The project's training settings, with a run's ``overrides`` (same keys) on top."""
    stored = project.settings.get("training") if isinstance(project.settings, dict) else None
    base = dict(stored) if isinstance(stored, dict) else {}
    if overrides:
        if not isinstance(overrides, dict):
            raise ValidationError({"parameters": "must be a JSON object"})
        base.update(overrides)
    return parse_training_settings(base, field="parameters" if overrides else "settings")
