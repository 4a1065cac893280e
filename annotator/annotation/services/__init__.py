"""Stage 1's workflow, one module per concern:

- ``decoding``: the process-wide caches, the model thread, computing a missing embedding once;
- ``prediction``: ``prepare`` and ``predict`` (answering a click);
- ``leases``: the annotator queue's leases (next image, heartbeat, give back, finish);
- ``visits``: annotation sessions and their click and mask counts;
- ``review``: rejecting masks and approving images.

Reads (the queue's candidates, the previous image, the dashboard) are in ``selectors``. The names
below are the package's public surface; callers import them from here.
"""

from __future__ import annotations

from annotator.annotation.selectors import previous_image, queue_candidates
from annotator.annotation.services import decoding, leases, prediction, review, visits
from annotator.annotation.services.decoding import (
    PREPARING,
    READY,
    classic_states,
    decode_state,
    embeddings,
    logits_store,
    model_thread,
    prefetch_queue,
    shared_logits,
    start_embedding,
)
from annotator.annotation.services.leases import (
    LeaseLost,
    _take_lease,
    finish_image,
    heartbeat,
    lease_duration,
    next_image,
    note_activity,
    open_image,
    release_lease,
    renew_lease,
)
from annotator.annotation.services.prediction import classic_state, predict, prepare
from annotator.annotation.services.review import approve_image, reject_mask
from annotator.annotation.services.visits import (
    count_saved_mask,
    current_session_id,
    end_open_sessions,
    end_sessions,
    flush_clicks,
    start_session,
)
from annotator.images.models import Image


def reset_caches() -> None:
    """Forget every in-memory cache of this process (tests; after a model change)."""
    decoding.reset_caches()
    visits.reset()


__all__ = [
    "PREPARING",
    "READY",
    "Image",
    "LeaseLost",
    "_take_lease",
    "approve_image",
    "classic_state",
    "classic_states",
    "count_saved_mask",
    "current_session_id",
    "decode_state",
    "decoding",
    "embeddings",
    "end_open_sessions",
    "end_sessions",
    "finish_image",
    "flush_clicks",
    "heartbeat",
    "lease_duration",
    "leases",
    "logits_store",
    "model_thread",
    "next_image",
    "note_activity",
    "open_image",
    "predict",
    "prediction",
    "prefetch_queue",
    "prepare",
    "previous_image",
    "queue_candidates",
    "reject_mask",
    "release_lease",
    "renew_lease",
    "reset_caches",
    "review",
    "shared_logits",
    "start_embedding",
    "start_session",
    "visits",
]
