"""Annotation sessions: one row per visit of an annotator to an image, with its clicks (counted in
memory and written every few seconds, so a click costs no database write) and the masks saved."""

from __future__ import annotations

import threading
import time

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import F
from django.utils import timezone

from annotator.annotation.interactive import LruCache
from annotator.annotation.models import AnnotationSession
from annotator.images.models import Image
from annotator.masks.models import Mask
from annotator.training.services import model_version_for

_session_ids: LruCache[tuple[int, int], int] = LruCache(max_items=4096)
_clicks: dict[int, list[float]] = {}  # session id → [unsaved clicks, last write (monotonic)]
_clicks_lock = threading.Lock()
CLICK_FLUSH_SECONDS = 5.0


def _open_session(image: Image, user: AbstractBaseUser) -> AnnotationSession:
    """The one place a visit's row is made (the page's visit, or an API client's first click)."""
    session = AnnotationSession.objects.create(
        project_id=image.project_id,
        image=image,
        annotator=user,
        model_version=model_version_for(image.project),
    )
    _session_ids.put((user.pk, image.pk), session.pk)
    return session


def start_session(image: Image, user: AbstractBaseUser) -> AnnotationSession:
    """A new visit; the user's earlier visits that were left open end now."""
    end_open_sessions(user)
    return _open_session(image, user)


def current_session_id(image: Image, user: AbstractBaseUser) -> int:
    """The user's open visit to the image, opened now when there is none."""
    found = _session_ids.get((user.pk, image.pk))
    if found is not None:
        return found
    session = (
        AnnotationSession.objects.filter(image=image, annotator=user, ended_at__isnull=True)
        .order_by("-id")
        .first()
    )
    if session is None:  # an API client that never opened the page still makes a visit
        return _open_session(image, user).pk
    _session_ids.put((user.pk, image.pk), session.pk)
    return session.pk


def count_clicks(image: Image, user: AbstractBaseUser, clicks: int) -> None:
    """Add the clicks to the user's visit; written once every CLICK_FLUSH_SECONDS per visit."""
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


def reset() -> None:
    """Forget which visit is open for whom (tests; the rows stay)."""
    _session_ids.clear()
