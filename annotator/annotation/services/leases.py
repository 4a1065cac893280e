"""The annotator queue's leases: which image an annotator holds, for how long, and how it goes
back to the queue (given back, finished, or the lease runs out). An image is leased to one
annotator at a time; a lease is renewed by activity and by the page's heartbeat."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import Case, Exists, F, OuterRef, Q, Value, When
from django.utils import timezone

from annotator.annotation.selectors import lease_free, queue_candidates
from annotator.annotation.services.visits import count_clicks, end_sessions
from annotator.images.models import QUEUE_STATUSES, Image, ImageStatus
from annotator.masks.models import Mask, MaskStatus
from annotator.projects.models import Project


def lease_duration() -> timedelta:
    return timedelta(seconds=settings.MASKMILL_LEASE_SECONDS)


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
        .filter(Q(leased_by=user) | lease_free(now))
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


def note_activity(image: Image, user: AbstractBaseUser, clicks: int = 0) -> None:
    """A prompt or save: renew the user's lease when it is past half-time, count the clicks."""
    held = image.leased_by_id == user.pk and image.lease_expires_at is not None
    if held and image.lease_expires_at - timezone.now() < lease_duration() / 2:
        renew_lease(image, user)
    if clicks > 0:
        count_clicks(image, user, clicks)
