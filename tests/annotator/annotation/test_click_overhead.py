"""What a click costs besides decoding: the queries of ``POST /api/images/{id}/predict`` (the
caller's authentication, then one query for the image, its project and the caller's role), the
process's memo of ModelVersion rows (re-read after a few seconds, forgotten on local changes, never
holding a rolled-back row), and ``note_activity`` writing nothing on most clicks.

These tests run outside a test transaction (``transaction=True``), as requests do: the memo keeps
only committed rows, so inside the usual rolled-back test transaction it would keep nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotator.annotation import services
from annotator.annotation.models import AnnotationSession
from annotator.projects.models import Project
from annotator.training import services as training
from annotator.training.models import ModelVersion
from tests.annotator.annotation_fixtures import add_picture, disk_picture, tiny_sam  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

FIRST = {"points": [[80, 60]], "labels": [1]}


@pytest.fixture(autouse=True)
def _no_time_based_writes(monkeypatch):
    """No memo expiry and no batched click write in the middle of a counted click, however slow
    the machine: those are once every few seconds, tested on their own below."""
    monkeypatch.setattr(training, "VERSION_MEMO_SECONDS", 3600.0)
    monkeypatch.setattr(services.visits, "CLICK_FLUSH_SECONDS", 3600.0)
    services.reset_caches()
    yield
    services.reset_caches()


@pytest.fixture
def leased_image(tiny_sam, project, users):  # noqa: F811
    """An image with its embedding stored, leased to the annotator, as the page has it open."""
    from annotator.images.embeddings import ensure_embedding

    image = add_picture(project, disk_picture())
    ensure_embedding(image.pk)
    assert services.open_image(image, users["annotator"]) is None
    return image


def token_client(user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def clicks(client: APIClient, image, count: int = 4) -> None:
    """A first click, then refinements with the previous answer's logits handle."""
    url = f"/api/images/{image.pk}/predict"
    handle, points = None, []
    for n in range(count):
        points.append([80 - 5 * n, 60])
        body = {"points": points, "labels": [1] * len(points), "multimask": n == 0}
        if handle:
            body["mask_input"] = handle
        response = client.post(url, body, format="json")
        assert response.status_code == 200, response.content
        assert "masks" in response.json(), response.json()
        handle = response.json()["logits_handle"]


def test_a_click_is_the_token_lookup_and_one_query(leased_image, users, django_assert_max_num_queries):
    client = token_client(users["annotator"])
    assert client.post(f"/api/images/{leased_image.pk}/prepare").json() == {"state": "ready"}
    clicks(client, leased_image, count=1)  # the visit's session row, the model's row: once
    for _ in range(3):
        with django_assert_max_num_queries(2):  # token → user; image + project + caller's role
            clicks(client, leased_image, count=1)
    with django_assert_max_num_queries(4 * 2):
        clicks(client, leased_image, count=4)


def test_a_click_of_the_annotation_page_adds_only_its_session(
    leased_image, users, django_assert_max_num_queries
):
    client = APIClient()
    client.force_login(users["annotator"])  # the page: session cookie (session row, then the user)
    clicks(client, leased_image, count=1)
    with django_assert_max_num_queries(3):
        clicks(client, leased_image, count=1)


def test_a_project_with_an_active_version_costs_no_more(
    leased_image, project, users, django_assert_max_num_queries
):
    project.active_model_version = training.configured_model_version()
    project.save(update_fields=["active_model_version"])
    client = token_client(users["annotator"])
    clicks(client, leased_image, count=1)
    with django_assert_max_num_queries(2):
        clicks(client, leased_image, count=1)


def test_access_rules_are_unchanged(leased_image, users, other_project):
    body = {**FIRST}
    url = f"/api/images/{leased_image.pk}/predict"
    assert token_client(users["outsider"]).post(url, body, format="json").status_code == 404
    assert token_client(users["reviewer"]).post(url, body, format="json").status_code == 403
    assert token_client(users["manager"]).post(url, body, format="json").status_code == 200
    assert token_client(users["admin"]).post(url, body, format="json").status_code == 200
    missing = token_client(users["annotator"]).post("/api/images/999999/predict", body, format="json")
    assert missing.status_code == 404
    foreign = add_picture(other_project, disk_picture(seed=4), name="foreign.png")
    foreign_url = f"/api/images/{foreign.pk}/predict"
    assert token_client(users["annotator"]).post(foreign_url, body, format="json").status_code == 404
    assert token_client(users["admin"]).post(foreign_url, body, format="json").status_code == 200


# ------------------------------------------------------------------------- the ModelVersion memo


@pytest.fixture
def configured(settings):
    settings.MASKMILL_MODEL_TYPE = "custom"
    settings.MASKMILL_CHECKPOINT = "memo.pt"
    settings.MASKMILL_MODEL_CONFIG = {"image_size": 256}


def test_the_configured_version_is_read_once_and_callers_get_copies(configured, django_assert_num_queries):
    first = training.configured_model_version()
    with django_assert_num_queries(0):
        again = training.configured_model_version()
    assert again.pk == first.pk and again is not first
    again.name = "changed by a caller"
    assert training.configured_model_version().name == first.name


def test_a_row_changed_or_deleted_elsewhere_is_read_again_after_the_memo_expires(
    configured, monkeypatch, django_assert_num_queries
):
    first = training.configured_model_version()
    # Another process renames the row (no signal reaches this one): served as remembered...
    ModelVersion.objects.filter(pk=first.pk).update(name="renamed elsewhere")
    assert training.configured_model_version().name == first.name
    # ...until the memo's seconds are over.
    monkeypatch.setattr(training, "VERSION_MEMO_SECONDS", 0.0)
    assert training.configured_model_version().name == "renamed elsewhere"
    with connection.cursor() as cursor:  # deleted elsewhere: a new row, never the gone one
        cursor.execute("DELETE FROM training_modelversion WHERE id = %s", [first.pk])
    recreated = training.configured_model_version()
    assert recreated.pk != first.pk and ModelVersion.objects.filter(pk=recreated.pk).exists()


def test_local_saves_and_deletes_forget_the_memo_at_once(configured, django_assert_num_queries):
    first = training.configured_model_version()
    row = ModelVersion.objects.get(pk=first.pk)
    row.name = "renamed here"
    row.save()
    assert training.configured_model_version().name == "renamed here"
    row.delete()
    assert training.configured_model_version().pk != first.pk


def test_a_row_created_in_a_rolled_back_transaction_is_not_remembered(configured):
    with pytest.raises(RuntimeError), transaction.atomic():
        doomed = training.configured_model_version()
        raise RuntimeError("the request fails after creating the row")
    assert not ModelVersion.objects.filter(pk=doomed.pk).exists()
    found = training.configured_model_version()
    assert ModelVersion.objects.filter(pk=found.pk).exists()


def test_a_projects_active_version_is_remembered_by_its_id(project, django_assert_num_queries):
    one = ModelVersion.objects.create(family="custom", checkpoint="one.pt", config={"image_size": 256})
    two = ModelVersion.objects.create(family="custom", checkpoint="two.pt", config={"image_size": 256})
    Project.objects.filter(pk=project.pk).update(active_model_version=one)
    assert training.model_version_for(Project.objects.get(pk=project.pk)).pk == one.pk
    fresh = Project.objects.get(pk=project.pk)
    with django_assert_num_queries(0):
        assert training.model_version_for(fresh).pk == one.pk
    Project.objects.filter(pk=project.pk).update(active_model_version=two)  # the project row says
    assert training.model_version_for(Project.objects.get(pk=project.pk)).pk == two.pk


# --------------------------------------------------------------------------------- note_activity


def test_note_activity_writes_nothing_on_most_clicks(
    leased_image, users, monkeypatch, django_assert_num_queries
):
    annotator = users["annotator"]
    image = services.Image.objects.get(pk=leased_image.pk)
    services.note_activity(image, annotator, clicks=1)  # finds (or makes) the visit's row once
    with django_assert_num_queries(0):  # lease far from half-time, clicks counted in memory
        for _ in range(5):
            services.note_activity(image, annotator, clicks=1)
    session = AnnotationSession.objects.get(image=image, annotator=annotator)
    assert session.clicks == 0
    monkeypatch.setattr(services.visits, "CLICK_FLUSH_SECONDS", 0.0)  # the batch's seconds are over
    with django_assert_num_queries(1):
        services.note_activity(image, annotator, clicks=1)
    session.refresh_from_db()
    assert session.clicks == 7


def test_note_activity_renews_a_lease_past_half_time_with_one_update(
    leased_image, users, django_assert_num_queries
):
    annotator = users["annotator"]
    image = services.Image.objects.get(pk=leased_image.pk)
    image.lease_expires_at = timezone.now() + services.lease_duration() / 3
    services.Image.objects.filter(pk=image.pk).update(lease_expires_at=image.lease_expires_at)
    with django_assert_num_queries(1):
        services.note_activity(image, annotator)
    image.refresh_from_db()
    assert image.lease_expires_at > timezone.now() + services.lease_duration() - timedelta(minutes=1)
