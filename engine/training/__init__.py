"""Fine-tuning SAM-family models from (image or stored embedding, mask) pairs with the SAM
paper's interactive recipe, and click-protocol evaluation of the result.

    from engine.training import TrainConfig, TrainingSample, train, evaluate, save_checkpoint

    result = train(model, samples, TrainConfig(mode="decoder", steps=200), progress=print)
    if result.completed:
        save_checkpoint(model, "new.pth")
    metrics = evaluate(model, val_samples)   # {"mIoU@1": ..., "NoC@85": ..., ...}

``python -m engine.training --help`` is the command-line front end.
"""

from engine.sam.checkpoint_load import CheckpointError
from engine.training.checkpoint import save_checkpoint
from engine.training.config import (
    MIN_SAMPLES,
    MODES,
    TooFewSamplesError,
    TrainConfig,
    TrainingError,
    TrainingSample,
    TrainProgress,
    TrainResult,
)
from engine.training.evaluate import METRIC_KEYS, evaluate
from engine.training.loop import train

__all__ = [
    "METRIC_KEYS",
    "MIN_SAMPLES",
    "MODES",
    "CheckpointError",
    "TooFewSamplesError",
    "TrainConfig",
    "TrainProgress",
    "TrainResult",
    "TrainingError",
    "TrainingSample",
    "evaluate",
    "save_checkpoint",
    "train",
]
