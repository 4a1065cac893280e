"""Click-protocol evaluation of a model (``engine.evaluation``'s simulated annotator) on a
click-evaluation folder or on in-memory samples (images or stored embeddings)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from engine.evaluation import (
    InstanceResult,
    evaluate_dataset,
    evaluate_instance,
    load_click_dataset,
    summarize,
)
from engine.training.config import TrainingError, TrainingSample
from engine.training.prepare import Geometry, image_key_of, load_sample_embedding

METRIC_KEYS = ("mIoU@1", "mIoU@3", "mIoU@5", "NoC@85", "NoC@90")


def _summary_dict(results: list[InstanceResult], clicks: int) -> dict[str, float]:
    summary = summarize(results, clicks)
    metrics: dict[str, float] = {**summary.miou, **summary.noc}
    metrics["instances"] = summary.instances
    metrics["failures"] = summary.failures
    metrics["clicks"] = clicks
    return metrics


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    data: Sequence[TrainingSample] | str | os.PathLike,
    clicks: int = 20,
    limit: int | None = None,
) -> dict[str, float]:
    """mIoU@1/3/5, NoC@85/90 (keys as ``METRIC_KEYS``), ``instances`` and ``failures`` (never
    90 % within ``clicks``) of ``model`` under the click protocol. ``data`` is a folder of
    ``img/`` + ``gt/`` or a list of samples; a sample's stored embedding is used when it fits the
    model (no encoder run), else its image is encoded."""
    from engine.predictor import Predictor

    if clicks < 5:
        raise TrainingError(f"clicks must be at least 5 (mIoU@5 needs them), got {clicks}")
    model.eval()
    predictor = Predictor(model)
    if isinstance(data, (str, os.PathLike)):
        try:
            instances = load_click_dataset(Path(data), limit)
        except ValueError as exc:
            raise TrainingError(str(exc)) from exc
        return _summary_dict(evaluate_dataset(predictor, instances, max_clicks=clicks), clicks)
    samples = list(data)[:limit] if limit else list(data)
    if not samples:
        raise TrainingError("nothing to evaluate: no samples")
    geometry = Geometry.of(model)
    results, current = [], None
    for number, sample in enumerate(samples):
        mask = np.asarray(sample.mask).astype(bool)
        if mask.ndim != 2 or not mask.any():
            continue
        key = image_key_of(sample)
        if key != current:
            embedding = None
            if sample.embedding is not None:
                embedding, _ = load_sample_embedding(sample, geometry)
            if embedding is not None:
                predictor.set_embedding(embedding[None].float(), mask.shape)
            elif sample.image is not None:
                predictor.set_image(np.asarray(sample.image))
            else:
                continue
            current = key
        results.append(evaluate_instance(predictor, mask, max_clicks=clicks, name=sample.name or str(number)))
    if not results:
        raise TrainingError("nothing to evaluate: no sample has a non-empty mask with an image or embedding")
    return _summary_dict(results, clicks)
