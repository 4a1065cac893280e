"""The annotator queue (leases), visits, idempotent saves, review and the pages around them."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from annotator.annotation import services
from annotator.annotation.models import AnnotationSession
from annotator.images.models import Image, ImageStatus
from annotator.masks.models import Mask, MaskStatus
from engine.masks import encode_rle
from tests.annotator.annotation_fixtures import add_picture, disk_mask, disk_picture

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_caches():
    services.reset_caches()
    yield
    services.reset_caches()


@pytest.fixture
def second_annotator(project, django_user_model):
    from annotator.projects.services import add_member

    user = django_user_model.objects.create_user(username="annotator2", password="annotator2-pw-123")
    add_member(project, user=user, role="annotator")
    return user


@pytest.fixture
def images(project):
    return [add_picture(project, disk_picture(seed=i), name=f"p{i}.png") for i in range(3)]


def page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def api_client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def mask_body(**extra):
    rle = encode_rle(disk_mask())
    return {
        "segmentation": rle,
        "status": "accepted",
        "source": "manual",
        "seconds": 12.5,
        "clicks": 3,
        **extra,
    }


# ------------------------------------------------------------------------------------------ leases


def test_two_annotators_never_get_the_same_image(project, images, users, second_annotator):
    first = services.next_image(project, users["annotator"])
    second = services.next_image(project, second_annotator)
    assert first.pk != second.pk
    assert services.next_image(project, users["annotator"]).pk == first.pk  # reload: same image
    first.refresh_from_db()
    assert first.status == ImageStatus.IN_PROGRESS and first.leased_by == users["annotator"]
    assert first.lease_expires_at > timezone.now() + timedelta(minutes=10)


def test_an_expired_lease_goes_to_the_next_annotator(project, images, users, second_annotator):
    taken = services.next_image(project, users["annotator"])
    Image.objects.filter(pk=taken.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert services.next_image(project, second_annotator).pk == taken.pk
    assert services.open_image(taken, users["annotator"]) == second_annotator


def test_the_conditional_update_lets_only_one_annotator_win(project, images, users, second_annotator):
    image = images[0]
    assert services._take_lease(image, users["annotator"]) is True
    assert services._take_lease(image, second_annotator) is False
    assert services.renew_lease(image, second_annotator) is False
    assert services.renew_lease(image, users["annotator"]) is True


def test_queue_page_leases_and_opens_the_annotation_page(project, images, users, second_annotator):
    response = page_client(users["annotator"]).get(f"/projects/{project.pk}/annotate/")
    assert response.status_code == 302
    assert response.url == f"/images/{images[0].pk}/annotate/"
    page = page_client(users["annotator"]).get(response.url)
    assert page.status_code == 200
    config = json.loads(page.context["config_json"] and json.dumps(page.context["config_json"]))
    assert config["imageId"] == images[0].pk and config["projectId"] == project.pk
    assert config["secondsPerMaskHint"] == 30
    assert config["nextImageUrl"] == f"/projects/{project.pk}/annotate/"
    assert config["nextImageForm"]["done"] == images[0].pk
    assert {label["name"] for label in config["labels"]} == {"cat", "dog"}
    assert b'id="maskmill-config"' in page.content and b"/static/maskmill/js/app.js" in page.content

    busy = page_client(second_annotator).get(f"/images/{images[0].pk}/annotate/")
    assert busy.status_code == 409
    assert b"annotator holds image" in busy.content


def test_static_files_of_the_page_are_found():
    from django.contrib.staticfiles import finders

    for name in (
        "maskmill/js/app.js",
        "maskmill/css/annotate.css",
        "maskmill/js/rle.js",
        "maskmill/js/review.js",
    ):
        assert finders.find(name), name


def test_done_marks_the_image_annotated_and_moves_on(project, images, users):
    client = page_client(users["annotator"])
    client.get(f"/images/{images[0].pk}/annotate/")
    response = client.post(f"/projects/{project.pk}/annotate/", {"done": images[0].pk}, follow=True)
    assert response.redirect_chain[-1][0] == f"/images/{images[1].pk}/annotate/"
    images[0].refresh_from_db()
    assert images[0].status == ImageStatus.ANNOTATED and images[0].leased_by is None
    session = AnnotationSession.objects.get(image=images[0])
    assert session.ended_at is not None

    # A GET never finishes an image (links, prefetchers and crawlers follow GETs).
    client.get(f"/projects/{project.pk}/annotate/?done={images[1].pk}")
    images[1].refresh_from_db()
    assert images[1].status != ImageStatus.ANNOTATED
    # and a POST needs the CSRF token like every form.
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(users["annotator"])
    assert strict.post(f"/projects/{project.pk}/annotate/", {"done": images[1].pk}).status_code == 403


def test_empty_queue_says_so(project, users):
    response = page_client(users["annotator"]).get(f"/projects/{project.pk}/annotate/")
    assert response.status_code == 200
    assert b'data-testid="queue-empty"' in response.content


def test_reviewers_cannot_open_the_annotation_page(project, images, users):
    assert page_client(users["reviewer"]).get(f"/images/{images[0].pk}/annotate/").status_code == 403
    assert page_client(users["outsider"]).get(f"/images/{images[0].pk}/annotate/").status_code == 404


# ------------------------------------------------------------------------------- sessions, saves


def test_visit_counts_clicks_and_saved_masks(project, images, users):
    image = images[0]
    page_client(users["annotator"]).get(f"/images/{image.pk}/annotate/")
    client = api_client(users["annotator"])
    for point in ([80, 60], [70, 60]):
        assert (
            client.post(
                f"/api/images/{image.pk}/predict", {"points": [point], "labels": [1]}, format="json"
            ).status_code
            == 200
        )
    saved = client.post(
        f"/api/images/{image.pk}/masks/", mask_body(), format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert saved.status_code == 201, saved.content
    assert saved.json()["seconds"] == 12.5 and saved.json()["clicks"] == 3
    assert client.post(f"/api/images/{image.pk}/finish").status_code == 200
    session = AnnotationSession.objects.get(image=image, annotator=users["annotator"])
    assert (session.clicks, session.masks) == (2, 1)
    assert session.ended_at >= session.started_at


def test_a_retried_save_with_the_same_idempotency_key_stores_one_mask(project, images, users):
    client = api_client(users["annotator"])
    url = f"/api/images/{images[0].pk}/masks/"
    first = client.post(url, mask_body(), format="json", HTTP_IDEMPOTENCY_KEY="save-42")
    again = client.post(url, mask_body(), format="json", HTTP_IDEMPOTENCY_KEY="save-42")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again["Idempotent-Replayed"] == "true"
    assert first.json()["id"] == again.json()["id"]
    assert Mask.objects.filter(image=images[0]).count() == 1
    other = client.post(
        f"/api/images/{images[1].pk}/masks/", mask_body(), format="json", HTTP_IDEMPOTENCY_KEY="save-42"
    )
    assert other.status_code == 400
    assert "already used" in other.json()["Idempotency-Key"][0]
    fresh = client.post(url, mask_body(), format="json", HTTP_IDEMPOTENCY_KEY="save-43")
    assert fresh.status_code == 201 and Mask.objects.filter(image=images[0]).count() == 2


def test_the_masks_list_names_who_made_each_mask(project, images, users, second_annotator):
    """The page's side list shows who made each mask: the API gives the username, not only the id."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from annotator.masks.services import create_mask

    url = f"/api/images/{images[0].pk}/masks/"
    saved = api_client(users["annotator"]).post(url, mask_body(), format="json").json()
    assert saved["annotator_name"] == "annotator" and saved["annotator"] == users["annotator"].pk
    with CaptureQueriesContext(connection) as one_mask:
        api_client(users["reviewer"]).get(url)
    api_client(second_annotator).post(url, mask_body(), format="json")
    create_mask(images[0], segmentation=encode_rle(disk_mask()), annotator=None, source="auto")
    with CaptureQueriesContext(connection) as three_masks:
        listed = api_client(users["reviewer"]).get(url).json()
    assert [m["annotator_name"] for m in listed] == ["annotator", "annotator2", None]
    assert len(three_masks) == len(one_mask)  # the names come with the masks, not a query each
    detail = api_client(users["reviewer"]).get(f"/api/masks/{saved['id']}/").json()
    assert detail["annotator_name"] == "annotator"


def test_stale_edit_is_a_409_with_a_sentence(project, images, users):
    client = api_client(users["annotator"])
    mask = client.post(f"/api/images/{images[0].pk}/masks/", mask_body(), format="json").json()
    assert (
        client.patch(f"/api/masks/{mask['id']}/", {"version": 1, "clicks": 4}, format="json").status_code
        == 200
    )
    stale = client.patch(f"/api/masks/{mask['id']}/", {"version": 1, "clicks": 5}, format="json")
    assert stale.status_code == 409
    assert "changed by someone else" in stale.json()["detail"]


# ------------------------------------------------------------------------------------------ review


def test_rejected_mask_returns_the_image_to_its_annotator_with_the_note(
    project, images, users, second_annotator
):
    image = services.next_image(project, users["annotator"])
    created = (
        api_client(users["annotator"])
        .post(f"/api/images/{image.pk}/masks/", mask_body(), format="json")
        .json()
    )
    services.finish_image(image, users["annotator"])
    services.next_image(project, users["annotator"])  # moves on to the next image
    services.finish_image(Image.objects.get(leased_by=users["annotator"]), users["annotator"])

    reviewer = api_client(users["reviewer"])
    assert reviewer.get(f"/api/projects/{project.pk}/review/queue").json()["results"][0]["image"] == image.pk
    empty_note = reviewer.post(
        f"/api/masks/{created['id']}/reject", {"note": " ", "version": 1}, format="json"
    )
    assert empty_note.status_code == 400 and "what is wrong" in empty_note.json()["note"][0]
    stale = reviewer.post(f"/api/masks/{created['id']}/reject", {"note": "x", "version": 7}, format="json")
    assert stale.status_code == 409
    rejected = reviewer.post(
        f"/api/masks/{created['id']}/reject", {"note": "misses the left edge", "version": 1}, format="json"
    )
    assert rejected.status_code == 200, rejected.content
    assert (
        rejected.json()["status"] == "rejected" and rejected.json()["review_note"] == "misses the left edge"
    )
    image.refresh_from_db()
    assert image.status == ImageStatus.NEEDS_REWORK

    # Sent-back images come before new ones, and the annotator sees the note in the mask list.
    assert services.next_image(project, users["annotator"]).pk == image.pk
    listed = api_client(users["annotator"]).get(f"/api/images/{image.pk}/masks/").json()
    assert listed[0]["review_note"] == "misses the left edge" and listed[0]["status"] == "rejected"

    assert (
        api_client(users["annotator"])
        .post(f"/api/masks/{created['id']}/reject", {"note": "x", "version": 2}, format="json")
        .status_code
        == 403
    )


def test_approve_only_annotated_images_without_rejections(project, images, users):
    reviewer = api_client(users["reviewer"])
    refused = reviewer.post(f"/api/images/{images[0].pk}/approve")
    assert refused.status_code == 400 and "only annotated images" in refused.json()["status"][0]
    services.next_image(project, users["annotator"])
    api_client(users["annotator"]).post(f"/api/images/{images[0].pk}/masks/", mask_body(), format="json")
    services.finish_image(images[0], users["annotator"])
    approved = reviewer.post(f"/api/images/{images[0].pk}/approve")
    assert approved.status_code == 200 and approved.json()["status"] == "reviewed"
    assert Mask.objects.get(image=images[0]).reviewed_by == users["reviewer"]


def test_review_page_rejects_through_a_form(project, images, users):
    services.next_image(project, users["annotator"])
    mask = (
        api_client(users["annotator"])
        .post(f"/api/images/{images[0].pk}/masks/", mask_body(), format="json")
        .json()
    )
    services.finish_image(images[0], users["annotator"])
    client = page_client(users["reviewer"])
    page = client.get(f"/projects/{project.pk}/review/")
    assert page.status_code == 200 and f'data-mask-id="{mask["id"]}"'.encode() in page.content
    posted = client.post(
        f"/projects/{project.pk}/review/",
        {"action": "reject", "mask": mask["id"], "version": 1, "note": "too loose", "image": images[0].pk},
    )
    assert posted.status_code == 302
    assert Mask.objects.get(pk=mask["id"]).status == MaskStatus.REJECTED
    assert page_client(users["annotator"]).get(f"/projects/{project.pk}/review/").status_code == 403


# --------------------------------------------------------------------------------------- dashboard


def test_dashboard_reports_progress_and_effort(project, images, users, second_annotator):
    for user, image, seconds in ((users["annotator"], images[0], 20.0), (second_annotator, images[1], 40.0)):
        services.next_image(project, user)
        api_client(user).post(
            f"/api/images/{image.pk}/masks/",
            mask_body(seconds=seconds, clicks=int(seconds / 10)),
            format="json",
        )
        services.finish_image(image, user)
    data = api_client(users["manager"]).get(f"/api/projects/{project.pk}/dashboard").json()
    assert data["progress"]["images_done"] == 2 and data["progress"]["images_total"] == 3
    assert data["progress"]["masks_per_image"] == 1.0
    by_annotator = {g["name"]: g for g in data["effort_by_annotator"]}
    assert by_annotator["annotator"]["median_seconds"] == 20.0
    assert by_annotator["annotator2"]["median_clicks"] == 4.0
    (classic,) = data["effort_by_model_version"]
    assert classic["median_seconds"] == 30.0 and classic["masks"] == 2

    page = page_client(users["annotator"]).get(f"/projects/{project.pk}/dashboard/")
    assert page.status_code == 200
    assert page.content.count(b"<svg") >= 3
    assert b'data-testid="images-done">2<' in page.content


def test_lease_api_renews_and_gives_the_image_back(project, images, users, second_annotator):
    mine = api_client(users["annotator"])
    assert mine.post(f"/api/projects/{project.pk}/queue/next").json()["id"] == images[0].pk
    assert mine.post(f"/api/images/{images[0].pk}/lease").status_code == 200
    taken = api_client(second_annotator).post(f"/api/images/{images[0].pk}/lease")
    assert taken.status_code == 409 and "annotator is annotating this image" in taken.json()["detail"]
    assert mine.delete(f"/api/images/{images[0].pk}/lease").status_code == 204
    images[0].refresh_from_db()
    assert images[0].status == ImageStatus.NEW and images[0].leased_by is None
    assert services.next_image(project, second_annotator).pk == images[0].pk


def test_heartbeat_renews_the_annotators_own_lease(project, images, users, settings):
    mine = api_client(users["annotator"])
    image = services.next_image(project, users["annotator"])
    Image.objects.filter(pk=image.pk).update(lease_expires_at=timezone.now() + timedelta(seconds=20))
    answer = mine.post(f"/api/images/{image.pk}/heartbeat")
    assert answer.status_code == 200, answer.content
    assert answer.json()["lease_seconds"] == settings.MASKMILL_LEASE_SECONDS
    image.refresh_from_db()
    assert image.leased_by == users["annotator"] and image.status == ImageStatus.IN_PROGRESS
    assert image.lease_expires_at > timezone.now() + timedelta(minutes=14)
    # Ran out while the tab was in the background, but nobody took it: still theirs.
    Image.objects.filter(pk=image.pk).update(lease_expires_at=timezone.now() - timedelta(minutes=1))
    assert mine.post(f"/api/images/{image.pk}/heartbeat").status_code == 200
    image.refresh_from_db()
    assert image.lease_expires_at > timezone.now() + timedelta(minutes=14)


def test_heartbeat_cannot_renew_someone_elses_lease(project, images, users, second_annotator):
    image = services.next_image(project, users["annotator"])
    expiry = Image.objects.get(pk=image.pk).lease_expires_at
    refused = api_client(second_annotator).post(f"/api/images/{image.pk}/heartbeat")
    assert refused.status_code == 409
    assert refused.json()["holder"] == "annotator"
    assert "annotator is annotating this image now" in refused.json()["detail"]
    image.refresh_from_db()
    assert image.leased_by == users["annotator"] and image.lease_expires_at == expiry  # untouched


def test_heartbeat_after_the_lease_ran_out_and_was_taken_is_a_clear_409(
    project, images, users, second_annotator
):
    image = services.next_image(project, users["annotator"])
    Image.objects.filter(pk=image.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert services.next_image(project, second_annotator).pk == image.pk  # handed on
    late = api_client(users["annotator"]).post(f"/api/images/{image.pk}/heartbeat")
    assert late.status_code == 409
    assert late.json() == {
        "detail": "annotator2 is annotating this image now (your lease had run out); masks you saved "
        "are kept, but move on to the next image.",
        "holder": "annotator2",
    }
    image.refresh_from_db()
    assert image.leased_by == second_annotator


def test_heartbeat_on_a_finished_image_says_it_is_no_longer_held(project, images, users):
    client = api_client(users["annotator"])
    image = services.next_image(project, users["annotator"])
    assert client.post(f"/api/images/{image.pk}/finish").status_code == 200  # e.g. in another tab
    late = client.post(f"/api/images/{image.pk}/heartbeat")
    assert late.status_code == 409 and late.json()["holder"] is None
    assert "you no longer hold this image (it is annotated" in late.json()["detail"]
    image.refresh_from_db()
    assert image.leased_by is None and image.status == ImageStatus.ANNOTATED


def test_heartbeat_is_for_annotators_of_the_project(project, images, users):
    image = services.next_image(project, users["annotator"])
    assert api_client(users["reviewer"]).post(f"/api/images/{image.pk}/heartbeat").status_code == 403
    assert api_client(users["outsider"]).post(f"/api/images/{image.pk}/heartbeat").status_code == 404
    page = page_client(users["annotator"]).get(f"/images/{image.pk}/annotate/")
    assert page.context["config_json"]["leaseSeconds"] == 15 * 60  # the page's heartbeat period / 3
