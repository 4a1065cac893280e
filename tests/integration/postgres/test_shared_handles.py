"""The platform as configured with Redis (the integration session's broker is Redis, so the logits
handles go there): a click's handle resolves in a web process that never saw it, through HTTP."""

from __future__ import annotations

import uuid

import pytest
from rest_framework.test import APIClient

from annotator.annotation import services
from annotator.annotation.logits import RedisLogits
from tests.conftest import add_image

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def redis_handles(settings):
    settings.MASKMILL_LOGITS_KEY_PREFIX = f"{settings.MASKMILL_LOGITS_KEY_PREFIX}{uuid.uuid4().hex}:"
    services.reset_caches()
    store = services.shared_logits()
    yield store
    store.clear()
    services.reset_caches()


def test_the_next_click_in_another_web_process_finds_the_handle_in_redis(redis_handles, users, project):
    assert isinstance(redis_handles, RedisLogits)  # chosen by the settings: the broker is Redis
    image = add_image(project, width=120, height=90, seed=3)
    client = APIClient()
    client.force_authenticate(users["annotator"])
    url = f"/api/images/{image.pk}/predict"
    first = client.post(url, {"points": [[60, 45]], "labels": [1]}, format="json").json()
    handle = first["logits_handle"]
    assert redis_handles.client.exists(f"{redis_handles.prefix}u{users['annotator'].pk}:{handle}")

    follow_up = {"points": [[60, 45], [5, 5]], "labels": [1, 0], "mask_input": handle, "multimask": False}
    same_process = client.post(url, follow_up, format="json").json()
    services.logits_store.forget_memory()  # the next click lands on another gunicorn worker
    other_process = client.post(url, follow_up, format="json").json()
    assert "notice" not in same_process and "notice" not in other_process
    assert other_process["masks"] == same_process["masks"]

    services.logits_store.forget_memory()
    stranger = APIClient()
    stranger.force_authenticate(users["manager"])
    foreign = stranger.post(url, follow_up, format="json").json()
    assert "expired" in foreign["notice"]  # another user's handle is not found
