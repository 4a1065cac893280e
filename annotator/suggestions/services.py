"""Training, gating and use of a project's label head.

A head belongs to a feature source: the model version whose stored embeddings it read (a decoder-only
fine-tune shares its parent's embeddings, so it looks its head up through the same version), or none
for the classic segmenter. It is trained from accepted, labelled masks of ``train`` images, evaluated
on ``val`` images, and becomes active only when it is at least as good there as the active head.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from annotator.images.models import Split
from annotator.masks.models import Mask, MaskStatus
from annotator.projects.models import Label, Project
from annotator.suggestions.features import ImageFeatures, masks_with_features
from annotator.suggestions.models import HeadStatus, HeadTrigger, LabelHeadVersion
from annotator.training.models import ModelVersion
from engine.labels import LabelHead, LabelHeadError, evaluate_label_head, train_label_head

log = logging.getLogger(__name__)


class SuggestionsUnavailable(Exception):
    """Why a project gets no suggestions (no head yet, too few labelled masks): shown in the page."""


def current_labels(project: Project) -> dict[int, str]:
    return dict(Label.objects.filter(project=project).values_list("id", "name"))


def feature_version(project: Project) -> ModelVersion | None:
    """The model version whose embeddings the project's head reads (None: the classic segmenter).
    A version sharing its parent's encoder reads the parent's embeddings."""
    from annotator.training.services import model_version_for

    version = model_version_for(project)
    if version is not None and version.embedding_version_id != version.pk:
        return ModelVersion.objects.get(pk=version.embedding_version_id)
    return version


def feature_source_id(version: ModelVersion | None) -> int | None:
    """The id heads are stored under: the version whose encoder made the embeddings."""
    return None if version is None else version.embedding_version_id


# ---- training -----------------------------------------------------------------------------------


@dataclass
class LabelledSet:
    features: np.ndarray
    labels: list[int]
    mask_ids: list[int]


def labelled_masks(project: Project, split: str):
    limit = settings.MASKMILL_LABEL_MAX_TRAIN_MASKS
    return (
        Mask.objects.filter(
            project=project, status=MaskStatus.ACCEPTED, label__isnull=False, image__split=split
        )
        .select_related("image")
        .order_by("image_id", "id")[:limit]
    )


def labelled_set(project: Project, version: ModelVersion | None, split: str) -> LabelledSet:
    rows = list(masks_with_features(labelled_masks(project, split), version))
    features = np.stack([f for _, f in rows]) if rows else np.zeros((0, 0), np.float32)
    return LabelledSet(features, [m.label_id for m, _ in rows], [m.pk for m, _ in rows])


def train_head(
    project: Project, trigger: str = HeadTrigger.MANUAL, training_run: Any = None, promote: bool = True
) -> LabelHeadVersion:
    """Train a head on the project's labelled train-split masks, evaluate it (and the active head) on
    the val split, store it, and promote it when ``promote`` and it is no worse than the active one.
    Raises LabelHeadError when the data cannot train a head (the message says what is missing)."""
    version = feature_version(project)
    names = current_labels(project)
    train = labelled_set(project, version, Split.TRAIN)
    head = train_label_head(
        train.features,
        train.labels,
        names,
        kind="classic" if version is None else "embedding",
        min_per_label=settings.MASKMILL_LABEL_MIN_MASKS_PER_LABEL,
    )
    val = labelled_set(project, version, Split.VAL)
    metrics = evaluate_label_head(head, val.features, val.labels) if val.labels else {"n": 0}
    metrics["train_masks"] = len(train.labels)
    active = active_head_row(project, version)
    promote_now, reason = gate(metrics, active, val)
    metrics["passes_gate"] = promote_now
    with transaction.atomic():
        row = LabelHeadVersion.objects.create(
            project=project,
            model_version=version,
            kind=head.kind,
            trigger=trigger,
            training_run=training_run,
            data=head.to_bytes(),
            masks_trained=len(train.labels),
            metrics=metrics,
            reason=reason,
        )
        if promote and promote_now:
            activate(row)
    return row


def gate(metrics: dict, active: LabelHeadVersion | None, val: LabelledSet) -> tuple[bool, str]:
    """Promote when there is no active head, or when the candidate's val top-1 is not below the
    active head's on the same masks (re-evaluated now: the val split may have grown)."""
    if active is None:
        return True, "no active head: the first one is promoted"
    if not val.labels:
        return True, "no labelled val-split masks to compare on: the newer head (more data) is promoted"
    current = evaluate_label_head(load_head(active), val.features, val.labels)
    new, old = metrics.get("top1") or 0.0, current.get("top1") or 0.0
    if new + 1e-9 >= old:
        return True, f"val top-1 {new:.3f} ≥ active head's {old:.3f}"
    return (
        False,
        f"val top-1 {new:.3f} < active head's {old:.3f} on the same {len(val.labels)} masks: "
        "kept as candidate",
    )


@transaction.atomic
def activate(row: LabelHeadVersion) -> None:
    LabelHeadVersion.objects.filter(
        project_id=row.project_id, model_version_id=row.model_version_id, status=HeadStatus.ACTIVE
    ).exclude(pk=row.pk).update(status=HeadStatus.RETIRED)
    LabelHeadVersion.objects.filter(pk=row.pk).update(status=HeadStatus.ACTIVE)
    row.status = HeadStatus.ACTIVE
    with _heads_lock:  # this process uses it at once; others within the memo's few seconds
        _active.clear()


def heads_for_run(training_run: Any) -> LabelHeadVersion | None:
    """Train the head alongside a model training run, as a candidate: it goes live with the run's
    model version (:func:`version_activated`), and only if it also passes its own gate."""
    try:
        return train_head(
            training_run.project, HeadTrigger.TRAINING_RUN, training_run=training_run, promote=False
        )
    except LabelHeadError as exc:
        log.info("training run %s: no label head (%s)", training_run.pk, exc)
        return None


def version_activated(project: Project, version: ModelVersion, gated: bool) -> None:
    """``version`` became the project's active model: the head trained in the run that made it goes
    live with it (a gated promotion also needs the head's own gate; a manager's promotion or a
    rollback takes the version's head as it is)."""
    row = (
        LabelHeadVersion.objects.filter(project=project, training_run__result_version=version)
        .defer("data")
        .order_by("-id")
        .first()
    )
    if row is None or row.status == HeadStatus.ACTIVE:
        return
    if gated and not row.metrics.get("passes_gate", False):
        return
    activate(row)


def note_labelled_masks(project: Project) -> bool:
    """Called when masks are accepted with a label: queues a cheap head retraining when
    ``MASKMILL_LABEL_RETRAIN_EVERY`` new labelled masks arrived since the last head. True if queued."""
    every = settings.MASKMILL_LABEL_RETRAIN_EVERY
    if every <= 0:
        return False
    last = LabelHeadVersion.objects.filter(project=project).order_by("-id").first()
    trained = 0 if last is None else last.masks_trained
    labelled = Mask.objects.filter(
        project=project, status=MaskStatus.ACCEPTED, label__isnull=False, image__split=Split.TRAIN
    ).count()
    if labelled - trained < every:
        return False
    # One queued retraining at a time per project (each accepted mask past the threshold would
    # queue another); the task lets go of the key when it ends, the timeout when its worker died.
    if not cache.add(retrain_key(project.pk), "queued", timeout=600):
        return False
    from annotator.suggestions.tasks import train_label_head_task

    transaction.on_commit(lambda: train_label_head_task.delay(project.pk))
    return True


def retrain_key(project_id: int) -> str:
    return f"maskmill:label-head-queued:{project_id}"


# ---- using the head -----------------------------------------------------------------------------

_heads: dict[tuple, LabelHead] = {}
_heads_lock = threading.Lock()


def active_head_row(project: Project, version: ModelVersion | None) -> LabelHeadVersion | None:
    return (
        LabelHeadVersion.objects.filter(
            project=project, model_version_id=feature_source_id(version), status=HeadStatus.ACTIVE
        )
        .defer("data")
        .order_by("-id")
        .first()
    )


def load_head(row: LabelHeadVersion) -> LabelHead:
    """The head of a row, parsed once per process (rows never change: a new head is a new row; the
    creation time is in the key so a test database reusing ids never meets a stale head)."""
    key = (row.pk, row.created_at)
    with _heads_lock:
        head = _heads.get(key)
    if head is None:
        data = LabelHeadVersion.objects.filter(pk=row.pk).values_list("data", flat=True).get()
        head = LabelHead.from_bytes(bytes(data))
        with _heads_lock:
            if len(_heads) > 64:
                _heads.clear()
            _heads[key] = head
    return head


def head_for(project: Project, version: ModelVersion | None) -> LabelHead:
    row = active_head_row(project, version)
    if row is None:
        raise SuggestionsUnavailable(no_head_reason())
    return load_head(row)


def no_head_reason() -> str:
    need = settings.MASKMILL_LABEL_MIN_MASKS_PER_LABEL
    return (
        f"no label suggestions yet: they are learned from accepted, labelled masks (at least 2 labels "
        f"with {need} masks each in train-split images), then trained from the dashboard or automatically"
    )


def suggest(
    head: LabelHead, source: ImageFeatures, masks: list[np.ndarray], labels: dict[int, str]
) -> list[dict]:
    return [
        head.suggest(source.features(mask), top_k=3, current_labels=labels).as_dict()
        if mask.any()
        else {"unknown": True, "labels": []}
        for mask in masks
    ]


# ---- suggestions for a click's answer -------------------------------------------------------------

_active: dict[tuple[int, int | None], tuple[float, LabelHeadVersion | None, dict[int, str]]] = {}


def cached_head(project: Project, version: ModelVersion | None) -> tuple[LabelHead, dict[int, str]]:
    """The active head and the project's current labels with no query on most clicks: both are read
    again after the model-version memo's few seconds (``training.services.VERSION_MEMO_SECONDS``),
    so a newly promoted head or a renamed label counts within them. ``prepare`` warms it."""
    import time

    from annotator.training import services as training

    key = (project.pk, feature_source_id(version))
    now = time.monotonic()
    with _heads_lock:
        hit = _active.get(key)
    if hit is None or now - hit[0] > training.VERSION_MEMO_SECONDS:
        row = active_head_row(project, version)
        labels = current_labels(project) if row is not None else {}
        with _heads_lock:
            if len(_active) > 256:
                _active.clear()
            _active[key] = (now, row, labels)
    else:
        row, labels = hit[1], hit[2]
    if row is None:
        raise SuggestionsUnavailable(no_head_reason())
    return load_head(row), labels


def warm_suggestions(project: Project, version: ModelVersion | None) -> None:
    """Look the head up before the first click (the image is being prepared anyway)."""
    with contextlib.suppress(SuggestionsUnavailable):
        cached_head(project, version)


def forget_heads() -> None:
    with _heads_lock:
        _heads.clear()
        _active.clear()


def embedding_of(model: Any, state: Any) -> np.ndarray:
    """The (C, h, w) image embedding held by a decode state; a prepared state holds it with the
    model's no-mask embedding added (the decoder's first step), which is taken off again."""
    if state.features is not None:
        return state.features[0].detach().float().cpu().numpy()
    tokens = state.prepared.tokens[0] - model.prompt_encoder.no_mask_embed.weight
    h, w = state.prepared.grid
    return tokens.detach().float().cpu().numpy().T.reshape(-1, h, w)


def answer_suggestions(
    project: Project,
    model_version: ModelVersion | None,
    *,
    model: Any = None,
    state: Any = None,
    low_res: np.ndarray | None = None,
    masks: np.ndarray | None = None,
    pixels: np.ndarray | None = None,
) -> dict[str, Any]:
    """Top-3 label suggestions for each mask of a predict answer: from the decode state's embedding
    and the low-res logits for SAM-family models (no upsampling needed), from the pixels and the
    masks for the classic segmenter. ``{"suggestions_unavailable": reason}`` when there is no head."""
    try:
        head, labels = cached_head(project, model_version)
    except SuggestionsUnavailable as exc:
        return {"suggestions_unavailable": str(exc)}
    if model_version is None:
        if pixels is None or masks is None:
            return {"suggestions_unavailable": "the image's pixels are not at hand"}
        source, shapes = ImageFeatures(pixels=pixels), list(masks)
    else:
        img_size = int(model.image_encoder.img_size)
        in_h, in_w = state.input_size
        grid = np.asarray(low_res).shape[-1]
        rows, cols = -(-in_h * grid // img_size), -(-in_w * grid // img_size)
        shapes = [m[:rows, :cols] > 0 for m in np.asarray(low_res).reshape(-1, grid, grid)]
        source = ImageFeatures(
            embedding=embedding_of(model, state), input_size=(in_h, in_w), img_size=img_size
        )
    if head.kind != ("classic" if model_version is None else "embedding"):
        return {"suggestions_unavailable": "the label head was trained for another model; retrain it"}
    return {"suggestions": suggest(head, source, shapes, labels)}
