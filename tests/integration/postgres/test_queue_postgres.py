"""The annotator queue on the real PostgreSQL, where ``next_image`` locks its candidate with
``SELECT … FOR UPDATE SKIP LOCKED`` (the unit layer runs the SQLite path, a conditional UPDATE).
Annotators asking at the same moment (threads, each with its own connection) never get the same
image, a locked row is skipped rather than waited for, and released or expired leases are handed
out again."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotator.annotation import services
from annotator.images.models import Image, ImageStatus
from annotator.projects.services import add_member

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def make_images(project, count: int) -> list[Image]:
    """Queue rows only: the queue never opens the files."""
    return [
        Image.objects.create(project=project, file=f"queue/{i}.png", sha256=f"{i:064x}", width=32, height=24)
        for i in range(count)
    ]


@pytest.fixture
def annotators(project, django_user_model):
    made = []
    for i in range(8):
        user = django_user_model.objects.create_user(username=f"queue-{i}", password="queue-pw-123456")
        add_member(project, user=user, role="annotator")
        made.append(user)
    return made


def ask_at_once(project, users) -> dict[str, int | None]:
    """Every user asks for their next image at the same moment, each on its own connection."""
    barrier = threading.Barrier(len(users))
    got: dict[str, int | None] = {}
    errors: list[BaseException] = []

    def ask(user) -> None:
        try:
            barrier.wait(20)
            image = services.next_image(project, user)
            got[user.username] = None if image is None else image.pk
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=ask, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert len(got) == len(users)
    return got


def test_the_queue_uses_skip_locked_on_postgresql(project, annotators):
    assert connection.vendor == "postgresql" and connection.features.has_select_for_update_skip_locked
    make_images(project, 1)
    with CaptureQueriesContext(connection) as queries:
        assert services.next_image(project, annotators[0]) is not None
    assert any("FOR UPDATE" in q["sql"] and "SKIP LOCKED" in q["sql"] for q in queries.captured_queries)


def test_annotators_asking_at_the_same_moment_never_share_an_image(project, annotators):
    images = make_images(project, 4)
    got = ask_at_once(project, annotators)  # eight annotators, four images
    handed = [pk for pk in got.values() if pk is not None]
    assert len(handed) == len(set(handed))  # no image twice
    assert sorted(handed) == [image.pk for image in images]  # and none left behind
    for username, pk in got.items():
        if pk is not None:
            image = Image.objects.select_related("leased_by").get(pk=pk)
            assert image.leased_by.username == username and image.status == ImageStatus.IN_PROGRESS

    # Two leases run out; the four annotators who got nothing ask again, at once.
    expired = handed[:2]
    Image.objects.filter(pk__in=expired).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    waiting = [user for user in annotators if got[user.username] is None]
    again = ask_at_once(project, waiting)
    handed_again = [pk for pk in again.values() if pk is not None]
    assert sorted(handed_again) == sorted(expired)  # each expired image to exactly one of them
    leased = dict(Image.objects.filter(pk__in=expired).values_list("pk", "leased_by__username"))
    assert {again[name]: name for name in again if again[name] is not None} == leased


def test_a_locked_candidate_is_skipped_not_waited_for(project, annotators):
    first, second = make_images(project, 2)
    locked, release = threading.Event(), threading.Event()

    def hold_the_first_row() -> None:  # another annotator's next_image, caught mid-transaction
        try:
            with transaction.atomic():
                Image.objects.select_for_update().get(pk=first.pk)
                locked.set()
                release.wait(20)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_first_row)
    holder.start()
    try:
        assert locked.wait(20)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '5s'")  # a wait for the lock would fail, not hang
        image = services.next_image(project, annotators[0])
        assert image is not None and image.pk == second.pk
    finally:
        release.set()
        holder.join(30)
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
    assert services.next_image(project, annotators[1]).pk == first.pk  # free once the lock is gone


def test_released_and_expired_leases_are_handed_out_again(project, annotators):
    first, _ = make_images(project, 2)
    alice, bob, carol = annotators[:3]
    assert services.next_image(project, alice).pk == first.pk
    assert services.release_lease(first, alice)
    assert services.next_image(project, bob).pk == first.pk  # given back: the next annotator gets it

    Image.objects.filter(pk=first.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert services.next_image(project, carol).pk == first.pk  # bob's lease ran out
    assert services.open_image(first, bob) == carol  # bob cannot take it back
    with pytest.raises(services.LeaseLost, match="queue-2 is annotating this image now"):
        services.heartbeat(first, bob)
    first.refresh_from_db()
    assert first.leased_by == carol and first.lease_expires_at > timezone.now()
