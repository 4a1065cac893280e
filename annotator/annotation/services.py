"""Stage 1 workflow: interactive prediction (prepare/predict), the annotator queue with expiring
leases, annotation sessions, and review.

Interactive decoding never leaves the web process: the image embedding comes from a memory LRU
over the stored fp16 ``.npy``; a missing one is computed once however many requests ask for it
(one builder per key in this process; across processes the claim in ``images.embeddings``, the
one entry point every path that computes an embedding goes through) while ``prepare`` answers
``preparing``. The logits handle of an answer (the next click's mask prompt) resolves in any web
process: memory first, then the shared store (``logits``).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import close_old_connections, connection, transaction
from django.db.models import Case, Exists, F, IntegerField, OuterRef, Q, Value, When
from django.utils import timezone

from annotator.annotation.interactive import (
    STORED_MASK_PATTERN,
    ClassicState,
    DecodeState,
    LruCache,
    PromptError,
    Prompts,
    decode_low_res,
    decode_state_for,
    parse_prompts,
    rles_from_low_res,
    select_logits,
)
from annotator.annotation.logits import FileLogits, LogitsEntry, LogitsStore, RedisLogits, SharedLogits
from annotator.annotation.lowres import mask_to_low_res_logits
from annotator.images.models import QUEUE_STATUSES, Embedding, Image, ImageStatus
from annotator.masks.models import Mask, MaskStatus
from annotator.masks.services import StaleVersion
from annotator.projects.models import Project
from annotator.stages.models import AnnotationSession
from annotator.training.models import ModelVersion
from annotator.training.services import model_version_for, predictor_for
from engine.masks import decode_rle, encode_rle
from engine.runtime import ModelThread

log = logging.getLogger(__name__)

READY, PREPARING = "ready", "preparing"


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


# ------------------------------------------------------------------------------------------------
# Process-wide caches (one set per web process)

embeddings: LruCache[tuple[int, int], DecodeState] = LruCache(
    max_items=_setting("MASKMILL_EMBEDDING_CACHE_ITEMS", 32),
    max_bytes=_setting("MASKMILL_EMBEDDING_CACHE_BYTES", 512 * 1024 * 1024),
    size_of=lambda state: state.nbytes,
)
classic_states: LruCache[int, ClassicState] = LruCache(
    max_items=_setting("MASKMILL_CLASSIC_CACHE_ITEMS", 8),
    max_bytes=_setting("MASKMILL_CLASSIC_CACHE_BYTES", 512 * 1024 * 1024),
    size_of=lambda state: state.nbytes,
)
LOGITS_PER_USER = 16
_shared_logits_stores: dict[tuple, SharedLogits] = {}
_shared_logits_lock = threading.Lock()


def shared_logits() -> SharedLogits | None:
    """The store every web process shares the logits handles through (MASKMILL_LOGITS_STORE), one
    per configuration (tests change the settings)."""
    kind = _setting("MASKMILL_LOGITS_STORE", "memory")
    ttl = int(_setting("MASKMILL_LOGITS_TTL", 3600))
    if kind == "redis":
        config: tuple = (kind, settings.MASKMILL_REDIS_URL, settings.MASKMILL_LOGITS_KEY_PREFIX, ttl)
    elif kind == "file":
        config = (kind, str(settings.MASKMILL_LOGITS_DIR), ttl)
    else:
        return None
    found = _shared_logits_stores.get(config)
    if found is None:
        with _shared_logits_lock:
            found = _shared_logits_stores.get(config)
            if found is None:
                if kind == "redis":
                    found = RedisLogits(config[1], prefix=config[2], ttl=ttl, per_user=LOGITS_PER_USER)
                else:
                    found = FileLogits(config[1], ttl=ttl, per_user=LOGITS_PER_USER)
                _shared_logits_stores[config] = found
    return found


logits_store = LogitsStore(
    per_user=LOGITS_PER_USER, ttl=_setting("MASKMILL_LOGITS_TTL", 3600), shared=shared_logits
)

# Every torch call of this process runs on its model thread (clicks in arrival order, each with
# every core torch may use): a click is ~20-40 ms of matrix products on a CPU, and decoding several
# at once only makes them share the cores and the caches. One thread also keeps one OpenMP team,
# whose workers then spin between a click's parallel regions instead of sleeping; a second team
# (any request thread that touched torch) made every click 1.6x slower (engine.runtime). No
# batching across requests: different images share no work in the decoder.
model_thread = ModelThread()


def _decode_on_model_thread(
    model_version: ModelVersion, state: DecodeState, prompts: Prompts, mask_logits: np.ndarray | None
) -> tuple[Any, np.ndarray, np.ndarray, float, float]:
    """``decode_low_res`` on the model thread → (model, low-res logits, scores, seconds queued,
    seconds decoding)."""

    def job() -> tuple[Any, np.ndarray, np.ndarray, float]:
        started = time.perf_counter()
        model = predictor_for(model_version).model
        low_res, scores = decode_low_res(model, state, prompts, mask_logits)
        return model, low_res, scores, time.perf_counter() - started

    (model, low_res, scores, seconds), queued = model_thread.run_timed(job)
    return model, low_res, scores, queued, seconds


# Embeddings computed in this process, one at a time (the encoder uses every core by itself), each
# on a thread of its own that ends with it: its OpenMP team then goes too, and clicks decoded
# meanwhile on the model thread wait for nothing but the cores.
_encoder_lock = threading.Lock()
_computing: dict[tuple[int, int], float] = {}
_computing_lock = threading.Lock()


def reset_caches() -> None:
    """Forget every in-memory cache of this process (tests; after a model change)."""
    embeddings.clear()
    classic_states.clear()
    logits_store.clear()
    with _computing_lock:
        _computing.clear()
    _session_ids.clear()
    _prefetched.clear()


# ------------------------------------------------------------------------------------------------
# Embeddings: memory → storage → computed once


def decode_state(image: Image, model_version: ModelVersion, *, start: bool = True) -> DecodeState | None:
    """The image ready for decoding, or None while its embedding is being computed (started here
    when ``start`` and nobody is computing it yet)."""
    key = (image.pk, model_version.pk)
    state = embeddings.get(key)
    if state is not None:
        return state
    state = embeddings.get_or_create(key, lambda: _load_stored(image, model_version))
    if state is None and start:
        start_embedding(image.pk, model_version.pk)
    return state


def _load_stored(image: Image, model_version: ModelVersion) -> DecodeState | None:
    from engine.embeddings import load_embedding
    from engine.transforms import preprocess_shape

    row = Embedding.objects.filter(
        image_id=image.pk, model_version_id=model_version.embedding_version_id
    ).first()
    if row is None:
        return None
    try:
        with row.file.open("rb") as fileobj:
            features = load_embedding(fileobj)
    except (OSError, ValueError) as exc:
        # A lost or corrupt file: drop the row so the embedding is computed again.
        log.warning("embedding %s of image %s is unreadable (%s); recomputing", row.pk, image.pk, exc)
        row.delete()
        return None
    original = (int(image.height), int(image.width))
    stored_input = tuple(int(v) for v in row.input_size) if row.input_size else None

    def prepare_state() -> DecodeState:
        model = predictor_for(model_version).model
        input_size = stored_input or preprocess_shape(*original, model.image_encoder.img_size)
        return decode_state_for(model, features, original, input_size)

    return model_thread.run(prepare_state)


def start_embedding(image_id: int, model_version_id: int) -> bool:
    """Make sure the embedding is being computed somewhere; True when this call started it.

    ``MASKMILL_ON_DEMAND_EMBED``: ``web`` (default) computes it in this process's encoder thread
    (the annotator is waiting; the embed queue may be long), ``task`` sends it to the embed queue.
    """
    key = (image_id, model_version_id)
    now = time.monotonic()
    with _computing_lock:
        since = _computing.get(key)
        if since is not None and now - since < _setting("MASKMILL_EMBED_TIME_LIMIT", 600):
            return False
        _computing[key] = now
    if _setting("MASKMILL_ON_DEMAND_EMBED", "web") == "task":
        from annotator.images.tasks import embed

        try:
            embed.apply_async((image_id, model_version_id), queue="embed")
        except Exception:  # a broker that is down: compute here rather than never
            log.exception("could not queue the embedding of image %s; computing it here", image_id)
        else:
            return True
    threading.Thread(
        target=_compute_in_background, args=(image_id, model_version_id), name="maskmill-embed", daemon=True
    ).start()
    return True


def _compute_in_background(image_id: int, model_version_id: int) -> None:
    from annotator.images.embeddings import EmbeddingInProgress, ensure_embedding

    try:
        with _encoder_lock:
            ensure_embedding(image_id, model_version_id)
    except EmbeddingInProgress:
        pass  # another process computes it; prepare finds it stored when it is done
    except Exception:
        log.exception("computing the embedding of image %s failed", image_id)
    finally:
        with _computing_lock:
            _computing.pop((image_id, model_version_id), None)
        close_old_connections()
        connection.close()


_prefetched: LruCache[tuple[int, int], float] = LruCache(max_items=4096)


def prefetch_queue(image: Image, user: AbstractBaseUser, count: int | None = None) -> list[int]:
    """Queue the embeddings of the next images this annotator's queue would hand out (embed queue),
    so they are ready when the annotator gets there. Returns the image ids queued."""
    from annotator.images.tasks import embed

    count = _setting("MASKMILL_PREFETCH_IMAGES", 3) if count is None else count
    model_version = model_version_for(image.project)
    if model_version is None or count <= 0:
        return []
    upcoming = list(
        queue_candidates(image.project, user).exclude(pk=image.pk).values_list("pk", flat=True)[:count]
    )
    have = set(
        Embedding.objects.filter(
            image_id__in=upcoming, model_version_id=model_version.embedding_version_id
        ).values_list("image_id", flat=True)
    )
    now, queued = time.monotonic(), []
    for image_id in upcoming:
        key = (image_id, model_version.pk)
        last = _prefetched.get(key)
        if image_id in have or (last is not None and now - last < 600):
            continue
        _prefetched.put(key, now)
        queued.append(image_id)
        transaction.on_commit(
            lambda i=image_id: embed.apply_async((i, model_version.pk), queue="embed"), robust=True
        )
    return queued


# ------------------------------------------------------------------------------------------------
# prepare / predict


def prepare(image: Image) -> str:
    """``ready`` when a click can be decoded now, else ``preparing`` (computation started)."""
    model_version = model_version_for(image.project)
    if model_version is None:
        classic_state(image)
        return READY
    return READY if decode_state(image, model_version) is not None else PREPARING


def classic_state(image: Image) -> ClassicState:
    """The weight-free segmenter holding this image (kept in a small LRU: reading and converting
    the image is most of its first-click cost)."""

    def build() -> ClassicState:
        from engine.classic import ClassicPredictor
        from engine.images import read_image

        with image.file.open("rb") as fileobj:
            pixels = read_image(fileobj.read(), max_pixels=settings.MASKMILL_MAX_IMAGE_PIXELS)
        predictor = ClassicPredictor()
        predictor.set_image(pixels)
        return ClassicState(predictor=predictor, lock=threading.Lock(), nbytes=int(pixels.nbytes * 2))

    state = classic_states.get_or_create(image.pk, build)
    assert state is not None
    return state


def _stored_mask_logits(image: Image, reference: str) -> np.ndarray:
    mask_id = int(STORED_MASK_PATTERN.match(reference).group(1))
    rle = Mask.objects.filter(pk=mask_id, image_id=image.pk).values_list("segmentation", flat=True).first()
    if rle is None:
        raise PromptError({"mask_input": f"mask {mask_id} is not a mask of image {image.pk}"})
    return mask_to_low_res_logits(decode_rle(rle))


def predict(image: Image, user: AbstractBaseUser, data: Any) -> dict[str, Any]:
    """Masks for the prompts in ``data`` (the predict body), as COCO RLE at image resolution, with a
    handle to their low-res logits for the next round; ``{"state": "preparing"}`` while the image's
    embedding is being computed."""
    prompts = parse_prompts(data, image.width, image.height)
    model_version = model_version_for(image.project)
    model_key = "classic" if model_version is None else f"mv{model_version.pk}"
    notice = None
    mask_logits = None
    if prompts.mask_input is not None:
        if prompts.mask_input.startswith("mask:"):
            mask_logits = _stored_mask_logits(image, prompts.mask_input)
        else:
            entry = logits_store.get(user.pk, prompts.mask_input, image.pk)
            if entry is None or entry.model_key != model_key:
                notice = (
                    "the previous answer's logits have expired (or the model changed): this answer "
                    "uses your clicks without the previous mask"
                )
            else:
                mask_logits = select_logits(entry, prompts.mask_index)
        if mask_logits is None and prompts.points is None and prompts.box is None:
            raise PromptError({"mask_input": notice or "no usable mask prompt and no other prompt"})

    queued = 0.0
    if model_version is None:
        began = time.perf_counter()
        masks, scores, low_res = _predict_classic(image, prompts, mask_logits)
        started = time.perf_counter()
        decoding = started - began
        rles = [encode_rle(m) for m in masks]
        model_name, fallback = "classic", True
    else:
        state = decode_state(image, model_version)
        if state is None:
            return {"state": PREPARING}
        model, low_res, scores, queued, decoding = _decode_on_model_thread(
            model_version, state, prompts, mask_logits
        )
        started = time.perf_counter()
        rles = rles_from_low_res(model, state, low_res)
        model_name, fallback = str(model_version), False
    encoded = time.perf_counter()
    handle = logits_store.put(
        user.pk,
        LogitsEntry(
            image_id=image.pk, model_key=model_key, low_res=np.asarray(low_res, np.float32), scores=scores
        ),
    )
    stored = time.perf_counter()
    answer: dict[str, Any] = {
        "masks": [{"segmentation": rle, "score": float(s)} for rle, s in zip(rles, scores)],
        "logits_handle": handle,
        "model": model_name,
        "model_version": None if model_version is None else model_version.pk,
        "fallback": fallback,
        "timing_ms": {  # waiting for earlier clicks, the model, masks at image size as RLE, handle
            "queue": round(queued * 1000, 2),
            "decode": round(decoding * 1000, 2),
            "masks": round((encoded - started) * 1000, 2),
            "store": round((stored - encoded) * 1000, 2),
        },
    }
    if notice:
        answer["notice"] = notice
    note_activity(image, user, clicks=prompts.clicks)
    return answer


def _predict_classic(
    image: Image, prompts: Prompts, mask_logits: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    state = classic_state(image)
    with state.lock:
        try:
            return state.predictor.predict(
                point_coords=prompts.points,
                point_labels=prompts.labels,
                box=prompts.box,
                mask_input=mask_logits,
                multimask_output=prompts.multimask,
            )
        except ValueError as exc:
            raise PromptError({"body": str(exc)}) from exc


# ------------------------------------------------------------------------------------------------
# Annotator queue: leases


def lease_duration() -> timedelta:
    return timedelta(seconds=settings.MASKMILL_LEASE_SECONDS)


def _lease_free(now) -> Q:
    return Q(leased_by__isnull=True) | Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now)


def queue_candidates(project: Project, user: AbstractBaseUser):
    """Images the queue may hand to ``user``, best first: images sent back by review for this
    annotator's masks, other images sent back, then new ones (and ones whose lease ran out)."""
    now = timezone.now()
    own_rejected = Mask.objects.filter(image=OuterRef("pk"), status=MaskStatus.REJECTED, annotator=user)
    return (
        Image.objects.filter(project=project)
        .filter(Q(status__in=QUEUE_STATUSES) | Q(status=ImageStatus.IN_PROGRESS))
        .filter(_lease_free(now))
        .annotate(
            priority=Case(
                When(Q(status=ImageStatus.NEEDS_REWORK) & Exists(own_rejected), then=Value(0)),
                When(status=ImageStatus.NEEDS_REWORK, then=Value(1)),
                default=Value(2),
                output_field=IntegerField(),
            )
        )
        .order_by("priority", "id")
    )


def next_image(project: Project, user: AbstractBaseUser) -> Image | None:
    """The image this annotator works on next, leased to them (None when the queue is empty).

    An image they already hold comes first (a reload or a second tab gets the same one). Two
    annotators asking at once never get the same image: PostgreSQL locks the candidate row with
    ``SELECT … FOR UPDATE SKIP LOCKED``; elsewhere (SQLite) the lease is a conditional UPDATE that
    only one of them can win.
    """
    now = timezone.now()
    held = (
        Image.objects.filter(project=project, leased_by=user, lease_expires_at__gt=now)
        .exclude(status__in=(ImageStatus.ANNOTATED, ImageStatus.REVIEWED))
        .order_by("id")
        .first()
    )
    if held is not None:
        _take_lease(held, user)
        return held
    if connection.features.has_select_for_update_skip_locked:
        with transaction.atomic():
            row = queue_candidates(project, user).select_for_update(skip_locked=True, of=("self",)).first()
            if row is None:
                return None
            _take_lease(row, user)
            return row
    for _ in range(50):  # bounded: each lost race removes one candidate
        candidate = queue_candidates(project, user).first()
        if candidate is None:
            return None
        if _take_lease(candidate, user):
            return candidate
    return None


def _take_lease(image: Image, user: AbstractBaseUser) -> bool:
    """Lease (or renew) ``image`` for ``user`` if it is free, expired or already theirs."""
    now = timezone.now()
    expires = now + lease_duration()
    taken = (
        Image.objects.filter(pk=image.pk)
        .filter(Q(leased_by=user) | _lease_free(now))
        .update(
            leased_by=user,
            lease_expires_at=expires,
            status=Case(
                When(status__in=QUEUE_STATUSES, then=Value(ImageStatus.IN_PROGRESS)),
                default=F("status"),
            ),
            updated_at=now,
        )
    )
    if taken:
        image.refresh_from_db(fields=["leased_by", "lease_expires_at", "status"])
    return bool(taken)


def open_image(image: Image, user: AbstractBaseUser) -> AbstractBaseUser | None:
    """Lease the image to ``user`` for a visit; the other annotator holding it when it is not free."""
    if _take_lease(image, user):
        return None
    image.refresh_from_db(fields=["leased_by", "lease_expires_at", "status"])
    return image.leased_by


def renew_lease(image: Image, user: AbstractBaseUser) -> bool:
    """Extend the lease of its holder (called on activity); False when ``user`` does not hold it."""
    now = timezone.now()
    return bool(
        Image.objects.filter(pk=image.pk, leased_by=user).update(
            lease_expires_at=now + lease_duration(), updated_at=now
        )
    )


class LeaseLost(Exception):
    """The caller no longer holds the image: ``detail`` says why (the 409 body), ``holder`` is the
    annotator who has it now, if anyone."""

    def __init__(self, detail: str, holder: AbstractBaseUser | None = None) -> None:
        super().__init__(detail)
        self.detail, self.holder = detail, holder


def heartbeat(image: Image, user: AbstractBaseUser) -> datetime:
    """The annotation page is open and its annotator active: extend their lease (also one that ran
    out while nobody took the image) and return the new expiry. LeaseLost when the image is someone
    else's now, or was finished or given back meanwhile; nothing is changed then."""
    now = timezone.now()
    expires = now + lease_duration()
    if Image.objects.filter(pk=image.pk, leased_by=user).update(lease_expires_at=expires, updated_at=now):
        image.leased_by, image.lease_expires_at = user, expires
        return expires
    image.refresh_from_db(fields=["leased_by", "lease_expires_at", "status"])
    holder = image.leased_by
    if holder is not None and image.lease_is_active(now):
        raise LeaseLost(
            f"{holder.get_username()} is annotating this image now (your lease had run out); "
            "masks you saved are kept, but move on to the next image.",
            holder,
        )
    raise LeaseLost(
        f"you no longer hold this image (it is {image.get_status_display().lower()}: finished or "
        "given back, perhaps in another tab); open it again from the queue to keep working on it."
    )


def release_lease(image: Image, user: AbstractBaseUser) -> bool:
    """Give the image back to the queue unfinished (status back to where the queue finds it)."""
    updated = Image.objects.filter(pk=image.pk, leased_by=user).update(
        leased_by=None,
        lease_expires_at=None,
        status=Case(
            When(Exists(Mask.objects.filter(image=OuterRef("pk"), status=MaskStatus.REJECTED)),
                 then=Value(ImageStatus.NEEDS_REWORK)),
            When(status=ImageStatus.IN_PROGRESS, then=Value(ImageStatus.NEW)),
            default=F("status"),
        ),
    )  # fmt: skip
    end_sessions(image, user)
    return bool(updated)


def finish_image(image: Image, user: AbstractBaseUser) -> bool:
    """The annotator is done with the image: it is annotated (waits for review), the lease ends,
    the visit ends. False when ``user`` no longer holds it (the lease expired and moved on)."""
    now = timezone.now()
    updated = Image.objects.filter(pk=image.pk, leased_by=user).update(
        leased_by=None,
        lease_expires_at=None,
        status=Case(
            When(status__in=(ImageStatus.REVIEWED,), then=F("status")), default=Value(ImageStatus.ANNOTATED)
        ),
        updated_at=now,
    )
    end_sessions(image, user)
    return bool(updated)


# ------------------------------------------------------------------------------------------------
# Sessions: one per visit; clicks are counted in memory and written every few seconds

_session_ids: LruCache[tuple[int, int], int] = LruCache(max_items=4096)
_clicks: dict[int, list[float]] = {}  # session id → [unsaved clicks, last write (monotonic)]
_clicks_lock = threading.Lock()
CLICK_FLUSH_SECONDS = 5.0


def start_session(image: Image, user: AbstractBaseUser) -> AnnotationSession:
    """A new visit; the user's earlier visits that were left open end now."""
    end_open_sessions(user)
    model_version = model_version_for(image.project)
    session = AnnotationSession.objects.create(
        project_id=image.project_id, image=image, annotator=user, model_version=model_version
    )
    _session_ids.put((user.pk, image.pk), session.pk)
    return session


def current_session_id(image: Image, user: AbstractBaseUser) -> int:
    found = _session_ids.get((user.pk, image.pk))
    if found is not None:
        return found
    session = (
        AnnotationSession.objects.filter(image=image, annotator=user, ended_at__isnull=True)
        .order_by("-id")
        .first()
    )
    if session is None:  # an API client that never opened the page still makes a visit
        session = AnnotationSession.objects.create(
            project_id=image.project_id,
            image=image,
            annotator=user,
            model_version=model_version_for(image.project),
        )
    _session_ids.put((user.pk, image.pk), session.pk)
    return session.pk


def note_activity(image: Image, user: AbstractBaseUser, clicks: int = 0) -> None:
    """A prompt or save: renew the user's lease when it is past half-time, count the clicks."""
    held = image.leased_by_id == user.pk and image.lease_expires_at is not None
    if held and image.lease_expires_at - timezone.now() < lease_duration() / 2:
        renew_lease(image, user)
    if clicks <= 0:
        return
    session_id = current_session_id(image, user)
    now = time.monotonic()
    with _clicks_lock:
        pending = _clicks.setdefault(session_id, [0, now])
        pending[0] += clicks
        due = now - pending[1] >= CLICK_FLUSH_SECONDS
        count = int(pending[0]) if due else 0
        if due:
            pending[0], pending[1] = 0, now
    if count:
        AnnotationSession.objects.filter(pk=session_id).update(clicks=F("clicks") + count)


def flush_clicks(session_id: int) -> None:
    with _clicks_lock:
        pending = _clicks.pop(session_id, None)
    if pending and pending[0]:
        AnnotationSession.objects.filter(pk=session_id).update(clicks=F("clicks") + int(pending[0]))


def end_sessions(image: Image, user: AbstractBaseUser) -> None:
    session_id = _session_ids.get((user.pk, image.pk))
    if session_id is not None:
        flush_clicks(session_id)
        _session_ids.pop((user.pk, image.pk))
    AnnotationSession.objects.filter(image=image, annotator=user, ended_at__isnull=True).update(
        ended_at=timezone.now()
    )


def end_open_sessions(user: AbstractBaseUser) -> None:
    for session_id in AnnotationSession.objects.filter(annotator=user, ended_at__isnull=True).values_list(
        "pk", flat=True
    ):
        flush_clicks(session_id)
    AnnotationSession.objects.filter(annotator=user, ended_at__isnull=True).update(ended_at=timezone.now())


def count_saved_mask(mask: Mask) -> None:
    """A mask saved by an annotator counts in their open visit to the image."""
    if mask.annotator_id is None:
        return
    session_id = (
        AnnotationSession.objects.filter(
            image_id=mask.image_id, annotator_id=mask.annotator_id, ended_at__isnull=True
        )
        .order_by("-id")
        .values_list("pk", flat=True)
        .first()
    )
    if session_id is not None:
        AnnotationSession.objects.filter(pk=session_id).update(masks=F("masks") + 1)


def previous_image(image: Image, user: AbstractBaseUser) -> Image | None:
    """The image of the user's visit before this one in the same project (to go back and fix it)."""
    earlier = (
        AnnotationSession.objects.filter(annotator=user, project_id=image.project_id)
        .exclude(image_id=image.pk)
        .order_by("-started_at", "-id")
        .values_list("image_id", flat=True)
        .first()
    )
    return Image.objects.filter(pk=earlier).first() if earlier is not None else None


# ------------------------------------------------------------------------------------------------
# Review


def reject_mask(mask: Mask, reviewer: AbstractBaseUser, *, note: str, version: int) -> Mask:
    """Reject an accepted mask with a note: the image goes back to the annotator queue and the note
    is shown next to the mask. ``version`` guards against rejecting a mask edited meanwhile."""
    note = (note or "").strip()
    if not note:
        raise ValidationError({"note": "say what is wrong with the mask so the annotator can fix it"})
    if len(note) > 2000:
        raise ValidationError({"note": f"keep the note under 2000 characters (got {len(note)})"})
    now = timezone.now()
    with transaction.atomic():
        updated = Mask.objects.filter(pk=mask.pk, version=version).update(
            status=MaskStatus.REJECTED,
            review_note=note,
            reviewed_by=reviewer,
            reviewed_at=now,
            version=F("version") + 1,
            updated_at=now,
        )
        if not updated:
            current = Mask.objects.filter(pk=mask.pk).values_list("version", flat=True).first()
            raise StaleVersion(mask.pk, version, current)
        # Back to the queue; an annotator working on it right now keeps the lease.
        Image.objects.filter(pk=mask.image_id).update(status=ImageStatus.NEEDS_REWORK, updated_at=now)
    mask.refresh_from_db()
    return mask


def approve_image(image: Image, reviewer: AbstractBaseUser) -> Image:
    """The reviewer is done with an annotated image and rejected nothing: it is reviewed."""
    if image.status != ImageStatus.ANNOTATED:
        raise ValidationError(
            {"status": f"only annotated images can be approved; image {image.pk} is {image.status}"}
        )
    if Mask.objects.filter(image=image, status=MaskStatus.REJECTED).exists():
        raise ValidationError({"status": "the image has rejected masks; it goes back to the annotator"})
    now = timezone.now()
    Mask.objects.filter(image=image, status=MaskStatus.ACCEPTED, reviewed_at__isnull=True).update(
        reviewed_by=reviewer, reviewed_at=now
    )
    Image.objects.filter(pk=image.pk, status=ImageStatus.ANNOTATED).update(
        status=ImageStatus.REVIEWED, updated_at=now
    )
    image.refresh_from_db()
    return image
