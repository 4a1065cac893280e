"""Which model a project uses, and loading it once per process."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction

from annotator.projects.models import Project
from annotator.training.models import ModelFamily, ModelStatus, ModelVersion, model_key

log = logging.getLogger(__name__)


def configured_model() -> tuple[str, str, dict[str, Any]] | None:
    """(family, checkpoint, config) from the settings, or None when no model is configured
    (the platform then uses the classic segmenter, which needs no embedding)."""
    family = settings.MASKMILL_MODEL_TYPE.strip()
    if not family:
        return None
    if family not in ModelFamily.values:
        raise ImproperlyConfigured(
            f"MASKMILL_MODEL_TYPE={family!r}: use one of {', '.join(ModelFamily.values)}"
        )
    checkpoint = settings.MASKMILL_CHECKPOINT.strip()
    if family != ModelFamily.CUSTOM and not checkpoint:
        raise ImproperlyConfigured(
            f"MASKMILL_MODEL_TYPE={family} needs MASKMILL_CHECKPOINT (a path to its weights)"
        )
    config = settings.MASKMILL_MODEL_CONFIG if family == ModelFamily.CUSTOM else {}
    return family, checkpoint, config


def configured_model_version() -> ModelVersion | None:
    """The ModelVersion row of the configured checkpoint, created on first use."""
    configured = configured_model()
    if configured is None:
        return None
    family, checkpoint, config = configured
    key = model_key(family, checkpoint, config)
    found = ModelVersion.objects.filter(key=key).first()
    if found is not None:
        return found
    try:
        with transaction.atomic():
            return ModelVersion.objects.create(
                family=family,
                checkpoint=checkpoint,
                config=config,
                name=f"{family} {Path(checkpoint).name}".strip(),
                status=ModelStatus.ACTIVE,
            )
    except IntegrityError:  # another process created it first
        return ModelVersion.objects.get(key=key)


def model_version_for(project: Project) -> ModelVersion | None:
    """The model a project works with: its active version, else the configured checkpoint."""
    if project.active_model_version_id is not None:
        return project.active_model_version
    return configured_model_version()


def checkpoint_path(model_version: ModelVersion) -> str | None:
    if not model_version.checkpoint:
        return None
    path = Path(model_version.checkpoint)
    if not path.is_absolute():
        path = Path(settings.MASKMILL_MODEL_STORE) / path
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint of model version {model_version.pk} not found: {path}")
    return str(path)


_cache_lock = threading.Lock()
_predictors: dict[int, Any] = {}


def predictor_for(model_version: ModelVersion) -> Any:
    """An ``engine.predictor.Predictor`` for the version, built once per process and kept.

    Only the most recent version stays loaded: a worker that moves to a new active version frees
    the old weights instead of holding every model it ever used.
    """
    with _cache_lock:
        predictor = _predictors.get(model_version.pk)
        if predictor is None:
            from engine.predictor import Predictor
            from engine.runtime import tune_malloc
            from engine.sam import build_sam, with_precision

            tune_malloc()  # this process decodes: keep the decoder's temporaries' pages mapped

            precision = settings.MASKMILL_ENCODER_PRECISION
            log.info(
                "loading model version %s (%s, encoder %s)", model_version.pk, model_version.family, precision
            )
            model = build_sam(
                model_version.family,
                checkpoint=checkpoint_path(model_version),
                config=model_version.config or None,
            )
            model.to(model_device()).eval()
            if precision != "fp32":
                with_precision(model, precision)
            _predictors.clear()
            predictor = _predictors[model_version.pk] = Predictor(model)
        return predictor


def model_device() -> str:
    """``MASKMILL_DEVICE``; ``auto`` puts the model on the GPU when the worker has one."""
    import torch

    device = settings.MASKMILL_DEVICE
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def forget_loaded_models() -> None:
    with _cache_lock:
        _predictors.clear()
