"""What a training run takes and gives back: the config, one (image or embedding, mask) sample,
the result, and the error for input that cannot be trained on."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import numpy as np
import torch

Mode = Literal["decoder", "full"]
MODES = ("decoder", "full")

# Fewer masks than this cannot fine-tune anything (a batch would repeat the same few objects);
# callers report how many more are needed.
MIN_SAMPLES = 8


class TrainingError(ValueError):
    """Input that cannot be trained on; the message says what is wrong and what is needed."""


class TooFewSamplesError(TrainingError):
    """Fewer usable masks than ``needed``; ``got`` says how many there were."""

    def __init__(self, got: int, needed: int, skipped: list[str] | None = None) -> None:
        self.got, self.needed, self.skipped = got, needed, list(skipped or [])
        detail = f" ({len(self.skipped)} skipped: {'; '.join(self.skipped[:3])})" if self.skipped else ""
        super().__init__(
            f"training needs at least {needed} masks, got {got} usable{detail}; {needed - got} more needed"
        )


@dataclass
class TrainConfig:
    """Hyper-parameters of one run. ``mode`` ``decoder`` trains the mask decoder (and, with
    ``train_prompt_encoder``, the prompt encoder) from image embeddings computed at most once;
    ``full`` trains the image encoder too, on augmented images.

    ``point_rounds`` / ``mask_rounds``: the interactive iterations after the first prompt (new
    error-region points, then rounds fed only the previous logits), as in SAM's appendix A."""

    mode: Mode = "decoder"
    steps: int = 200
    batch: int = 4
    lr: float = 1e-4
    encoder_lr: float | None = None  # full mode: the image encoder's rate (None: ``lr``)
    weight_decay: float = 0.01
    warmup: int = 20
    seed: int = 0
    device: str = "cpu"
    point_rounds: int = 8
    mask_rounds: int = 2
    train_prompt_encoder: bool = False
    focal_weight: float = 20.0
    # Weight of object pixels in the focal loss (background: 1 - alpha; negative: both 1). The
    # detection default 0.25 suits fine-tuning a good model; from scratch it favours empty masks.
    focal_alpha: float = 0.25
    dice_weight: float = 1.0
    iou_weight: float = 1.0
    grad_clip: float = 1.0
    box_noise: float = 0.1  # std of box corner noise, as a fraction of the box side
    box_noise_max: float = 20.0  # ... capped at this many input pixels
    scale_jitter: tuple[float, float] = (0.75, 1.25)  # full mode only
    flip: bool = True  # full mode only
    amp: bool = True  # bf16 autocast on a CUDA device
    min_samples: int = MIN_SAMPLES
    # The baseline the speed benchmark compares with: run the frozen encoder on every step
    # instead of once per image (decoder mode only).
    embed_each_step: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.mode not in MODES:
            raise TrainingError(f"mode must be one of {MODES}, not {self.mode!r}")
        for name in ("steps", "batch"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TrainingError(f"{name} must be a positive integer, got {value!r}")
        for name in ("warmup", "point_rounds", "mask_rounds", "min_samples"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise TrainingError(f"{name} must be a non-negative integer, got {value!r}")
        for name in ("lr", "weight_decay", "focal_weight", "dice_weight", "iou_weight", "grad_clip"):
            value = getattr(self, name)
            if (
                not isinstance(value, (int, float))
                or isinstance(value, bool)
                or not np.isfinite(value)
                or value < 0
            ):
                raise TrainingError(f"{name} must be a finite non-negative number, got {value!r}")
        if self.encoder_lr is not None and (
            not isinstance(self.encoder_lr, (int, float))
            or not np.isfinite(self.encoder_lr)
            or self.encoder_lr <= 0
        ):
            raise TrainingError(f"encoder_lr must be a positive number or None, got {self.encoder_lr!r}")
        if self.lr <= 0:
            raise TrainingError(f"lr must be positive, got {self.lr!r}")
        low, high = self.scale_jitter
        if not 0 < low <= high:
            raise TrainingError(
                f"scale_jitter must be (low, high) with 0 < low <= high, got {self.scale_jitter}"
            )
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as exc:
            raise TrainingError(f"unknown device {self.device!r}") from exc

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a (JSON) mapping, refusing unknown keys by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TrainingError(f"unknown training options {unknown}; known: {sorted(known)}")
        values = dict(values)
        if "scale_jitter" in values:
            values["scale_jitter"] = tuple(values["scale_jitter"])
        return cls(**values)


@dataclass
class TrainingSample:
    """One object to learn: a binary ``mask`` (H, W) of the image it lies in, and either the
    image (H, W, 3 uint8 RGB) or its stored embedding (a tensor/array (1, C, h, w), or the path
    of an fp16 ``.npy`` written by ``engine.embeddings``). Samples of one image may share the
    same image array / embedding object; it is then encoded or read once.

    ``full`` mode needs the image; ``decoder`` mode uses the embedding when there is one and
    otherwise encodes the image once."""

    mask: np.ndarray
    image: np.ndarray | None = None
    embedding: torch.Tensor | np.ndarray | str | os.PathLike | None = None
    name: str = ""
    image_key: str | None = None  # samples with the same key share one image/embedding

    @property
    def original_size(self) -> tuple[int, int]:
        return int(self.mask.shape[0]), int(self.mask.shape[1])


@dataclass
class TrainProgress:
    """What the ``progress`` callback receives after each step."""

    step: int
    steps: int
    loss: float
    masks_per_second: float
    lr: float


@dataclass
class TrainResult:
    """Outcome of :func:`engine.training.train`. ``stopped_reason`` is None when all steps ran;
    otherwise the model holds the weights of the last good step and should not be promoted."""

    steps_done: int
    steps: int
    losses: list[float] = field(default_factory=list)
    masks_per_second: float = 0.0
    seconds: float = 0.0
    samples: int = 0
    skipped: list[str] = field(default_factory=list)
    stopped_reason: str | None = None
    mode: str = "decoder"

    @property
    def completed(self) -> bool:
        return self.stopped_reason is None and self.steps_done == self.steps

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["completed"] = self.completed
        return data
