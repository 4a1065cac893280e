"""Which model a project uses, and loading it once per process."""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import IntegrityError, transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

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


# ModelVersion rows, remembered by this process: every click asks which model its project uses
# (the configured checkpoint's row, or the project's active version). A row is read again after
# VERSION_MEMO_SECONDS, so one deleted or changed in another process is not served for longer;
# this process's own saves and deletes, and a change of the model settings (tests), forget them
# at once. Only committed rows are kept: one created in a transaction that rolls back is not.
VERSION_MEMO_SECONDS = 5.0
_recent_versions: dict[tuple[str, str | int], tuple[ModelVersion, float]] = {}


def _recent_version(memo_key: tuple[str, str | int], load: Callable[[], ModelVersion]) -> ModelVersion:
    """A copy of the row remembered under ``memo_key`` if it was read less than
    VERSION_MEMO_SECONDS ago, else ``load()``'s (remembered once committed). Copies, so a caller
    may change its own."""
    now = time.monotonic()
    found = _recent_versions.get(memo_key)
    if found is not None and now - found[1] < VERSION_MEMO_SECONDS:
        return copy.copy(found[0])
    row = load()
    kept = (copy.copy(row), now)

    def remember() -> None:
        if len(_recent_versions) >= 64:  # a handful of versions in practice; never unbounded
            _recent_versions.clear()
        _recent_versions[memo_key] = kept

    transaction.on_commit(remember)  # outside a transaction (requests): at once
    return row


def forget_model_versions(**_: Any) -> None:
    """Read ModelVersion rows from the database again on their next use."""
    _recent_versions.clear()


@receiver(post_save, sender=ModelVersion, dispatch_uid="training-forget-versions-save")
@receiver(post_delete, sender=ModelVersion, dispatch_uid="training-forget-versions-delete")
def _model_version_changed(**_: Any) -> None:
    forget_model_versions()


@receiver(setting_changed, dispatch_uid="training-forget-versions-settings")
def _model_settings_changed(setting: str, **_: Any) -> None:
    if setting in ("MASKMILL_MODEL_TYPE", "MASKMILL_CHECKPOINT", "MASKMILL_MODEL_CONFIG"):
        forget_model_versions()


def configured_model_version() -> ModelVersion | None:
    """The ModelVersion row of the configured checkpoint, created on first use."""
    configured = configured_model()
    if configured is None:
        return None
    key = model_key(*configured)
    return _recent_version(("key", key), lambda: _configured_row(key, *configured))


def _configured_row(key: str, family: str, checkpoint: str, config: dict[str, Any]) -> ModelVersion:
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
    version_id = project.active_model_version_id
    if version_id is None:
        return configured_model_version()
    if Project.active_model_version.is_cached(project):
        return project.active_model_version
    return _recent_version(("pk", version_id), lambda: ModelVersion.objects.get(pk=version_id))


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
            checkpoint = checkpoint_path(model_version)
            with seeded_for(model_version, active=checkpoint is None):
                model = build_sam(
                    model_version.family, checkpoint=checkpoint, config=model_version.config or None
                )
            model.to(model_device()).eval()
            if precision != "fp32":
                with_precision(model, precision)
            _predictors.clear()
            predictor = _predictors[model_version.pk] = Predictor(model)
        return predictor


@contextlib.contextmanager
def seeded_for(model_version: ModelVersion, active: bool = True) -> Iterator[None]:
    """Inside: torch's CPU generator seeded from the version's identity (its key), the caller's
    generator restored after. A version with no checkpoint (``custom`` sizes to be trained) gets
    random weights; seeded this way they are the same in every process, so embeddings computed by
    one worker are decoded by the same model in another."""
    if not active:
        yield
        return
    import torch

    seed = int((model_version.key or model_key(model_version.family, "", model_version.config))[:15], 16)
    log.warning("model version %s has no checkpoint: random weights seeded from its key", model_version.pk)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


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
    forget_model_versions()
