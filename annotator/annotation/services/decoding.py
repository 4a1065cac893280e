"""Interactive decoding's process-wide state: the embedding and classic-segmenter caches, the
logits handles, the model thread every torch call runs on, and computing a missing embedding once.

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
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import close_old_connections, connection, transaction

from annotator.annotation.interactive import (
    ClassicState,
    DecodeState,
    LruCache,
    Prompts,
    decode_low_res,
    decode_state_for,
)
from annotator.annotation.logits import FileLogits, LogitsStore, RedisLogits, SharedLogits
from annotator.annotation.selectors import queue_candidates
from annotator.images.embeddings import load_stored
from annotator.images.models import Embedding, Image
from annotator.training.models import ModelVersion
from annotator.training.services import model_version_for, predictor_for
from engine.runtime import DecodeThreads, ModelThread, set_torch_threads

log = logging.getLogger(__name__)

READY, PREPARING = "ready", "preparing"

# ------------------------------------------------------------------------------------------------
# Process-wide caches (one set per web process)

embeddings: LruCache[tuple[int, int], DecodeState] = LruCache(
    max_items=settings.MASKMILL_EMBEDDING_CACHE_ITEMS,
    max_bytes=settings.MASKMILL_EMBEDDING_CACHE_BYTES,
    size_of=lambda state: state.nbytes,
)
classic_states: LruCache[int, ClassicState] = LruCache(
    max_items=settings.MASKMILL_CLASSIC_CACHE_ITEMS,
    max_bytes=settings.MASKMILL_CLASSIC_CACHE_BYTES,
    size_of=lambda state: state.nbytes,
)
LOGITS_PER_USER = 16
_shared_logits_stores: dict[tuple, SharedLogits] = {}
_shared_logits_lock = threading.Lock()


def shared_logits() -> SharedLogits | None:
    """The store every web process shares the logits handles through (MASKMILL_LOGITS_STORE), one
    per configuration (tests change the settings)."""
    kind = settings.MASKMILL_LOGITS_STORE
    ttl = int(settings.MASKMILL_LOGITS_TTL)
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


logits_store = LogitsStore(per_user=LOGITS_PER_USER, ttl=settings.MASKMILL_LOGITS_TTL, shared=shared_logits)

# Every torch call of this process runs on its model thread, clicks in arrival order: decoding
# several at once only makes them share the cores and caches, and a second thread touching torch
# would start a second OpenMP team (engine.runtime says why that is slow; docs/performance.md has
# the figures). No batching across requests: a batch of clicks costs the decoder as much per click
# as the clicks one by one (the decoder's work is the image tokens', per click), and its first
# click would wait for the last. A click runs with every core, or with one while another process's
# load makes every core stall (MASKMILL_MODEL_THREADS: 0 chooses so per click, N fixes N).
model_thread = ModelThread(threads=settings.MASKMILL_MODEL_THREADS or None)
decode_threads = DecodeThreads(
    settings.MASKMILL_MODEL_THREADS or None, fixed=settings.MASKMILL_MODEL_THREADS > 0
)


def _decode_on_model_thread(
    model_version: ModelVersion, state: DecodeState, prompts: Prompts, mask_logits: np.ndarray | None
) -> tuple[Any, np.ndarray, np.ndarray, float, float]:
    """``decode_low_res`` on the model thread → (model, low-res logits, scores, seconds queued,
    seconds decoding)."""

    def job() -> tuple[Any, np.ndarray, np.ndarray, float]:
        started = time.perf_counter()
        model = predictor_for(model_version).model
        threads = decode_threads.next()
        set_torch_threads(threads)
        low_res, scores = decode_low_res(model, state, prompts, mask_logits)
        seconds = time.perf_counter() - started
        decode_threads.record(threads, seconds)
        return model, low_res, scores, seconds

    (model, low_res, scores, seconds), queued = model_thread.run_timed(job)
    return model, low_res, scores, queued, seconds


# Embeddings computed in this process, one at a time (the encoder uses every core by itself), each
# on a thread of its own that ends with it: its OpenMP team then goes too, and clicks decoded
# meanwhile on the model thread wait for nothing but the cores.
_encoder_lock = threading.Lock()
_computing: dict[tuple[int, int], float] = {}
_computing_lock = threading.Lock()


# ------------------------------------------------------------------------------------------------
# Embeddings: memory → storage → computed once


def decode_state(image: Image, model_version: ModelVersion, *, start: bool = True) -> DecodeState | None:
    """The image ready for decoding, or None while its embedding is being computed (started here
    when ``start`` and nobody is computing it yet)."""
    key = (image.pk, model_version.pk)
    state = embeddings.get(key)
    if state is not None:
        return state
    state = embeddings.get_or_create(key, lambda: _stored_decode_state(image, model_version))
    if state is None and start:
        start_embedding(image.pk, model_version.pk)
    return state


def _stored_decode_state(image: Image, model_version: ModelVersion) -> DecodeState | None:
    from engine.transforms import preprocess_shape

    stored = load_stored(image, model_version)
    if stored is None:
        return None
    original = (int(image.height), int(image.width))

    def prepare_state() -> DecodeState:
        model = predictor_for(model_version).model
        input_size = stored.input_size or preprocess_shape(*original, model.image_encoder.img_size)
        return decode_state_for(model, stored.tensor, original, input_size)

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
        if since is not None and now - since < settings.MASKMILL_EMBED_TIME_LIMIT:
            return False
        _computing[key] = now
    if settings.MASKMILL_ON_DEMAND_EMBED == "task":
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

    if model_thread.process_threads is not None:  # the model thread changed the count new threads get
        set_torch_threads(model_thread.process_threads)  # the encoder: every core
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

    count = settings.MASKMILL_PREFETCH_IMAGES if count is None else count
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


def reset_caches() -> None:
    """Forget this module's in-memory caches (tests; after a model change)."""
    embeddings.clear()
    classic_states.clear()
    logits_store.clear()
    with _computing_lock:
        _computing.clear()
    _prefetched.clear()
