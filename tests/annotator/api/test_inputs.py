"""No 5xx from any input: ids beyond 64 bits in URLs, numbers in query strings and forms, stage
filters of the wrong type, deeply nested or oversized JSON bodies (JSON errors on API paths)."""

from __future__ import annotations

import json

import pytest
from django.urls import get_resolver
from django.urls.converters import IntConverter
from rest_framework.test import APIClient

from tests.conftest import add_image

pytestmark = pytest.mark.django_db
HUGE = str(2**63)
PROJECT_ROUTES = [
    "/api/projects/{id}/", "/api/projects/{id}/labels/", "/api/projects/{id}/memberships/",
    "/api/projects/{id}/images/", "/api/projects/{id}/generation-runs/", "/api/projects/{id}/prefill-report/",
    "/api/images/{id}/", "/api/images/{id}/file", "/api/images/{id}/masks/", "/api/masks/{id}/",
    "/api/labels/{id}/", "/api/memberships/{id}/", "/api/generation-runs/{id}/",
    "/projects/{id}/", "/projects/{id}/annotate/", "/projects/{id}/review/", "/projects/{id}/dashboard/",
    "/images/{id}/annotate/",
]  # fmt: skip


def api_client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    client.force_login(user)  # the pages use the session
    return client


def test_every_url_id_is_a_bounded_converter():
    """A route with <int:...> would let 2^63 reach the database driver again."""

    def walk(patterns):
        for entry in patterns:
            if hasattr(entry, "url_patterns"):
                yield from walk(entry.url_patterns)
            converters = getattr(entry.pattern, "converters", {})
            yield entry.pattern, converters

    unbounded = [str(p) for p, conv in walk(get_resolver().url_patterns) if any(
        type(c) is IntConverter for c in conv.values())]  # fmt: skip
    unbounded = [p for p in unbounded if not p.startswith("admin")]
    assert unbounded == [], "use <id:...> (annotator.params.IdConverter) for ids in routes"


@pytest.mark.parametrize("route", PROJECT_ROUTES)
@pytest.mark.parametrize("who", ["annotator", "admin"])
def test_ids_beyond_64_bits_answer_404(users, project, route, who):
    client = api_client(users[who])
    for method in ("get", "post"):
        response = getattr(client, method)(route.format(id=HUGE), {}, format="json")
        assert response.status_code == 404, (route, method, response.status_code)
        if route.startswith("/api/"):
            assert response["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("value", ["²", "٣", "9" * 5000, HUGE, "-1", "abc", "1.5"])
def test_page_numbers_are_parsed_defensively(users, project, value):
    image = add_image(project, seed=1)
    annotator = api_client(users["annotator"])
    assert annotator.get(f"/projects/{project.pk}/annotate/", {"done": value}).status_code in (200, 302)
    reviewer = api_client(users["reviewer"])
    assert reviewer.get(f"/projects/{project.pk}/review/", {"image": value}).status_code == 200
    review = f"/projects/{project.pk}/review/"
    response = reviewer.post(review, {"action": "reject", "mask": value, "image": value})
    assert response.status_code in (302, 404)
    response = reviewer.post(f"/projects/{project.pk}/review/", {"action": "approve", "image": value})
    assert response.status_code in (302, 404)
    assert image.pk  # the project has an image, so the pages render one


@pytest.mark.parametrize(
    "image_filter",
    [{"status": 5}, {"status": True}, {"status": [1, 2]}, {"status": {"a": 1}}, {"split": 3},
     {"split": ["train"]},
     {"ids": [2**64]}, {"ids": [HUGE]}, {"ids": "1,x"}, {"ids": True}, {"ids": [True]}, {"ids": 5},
     {"ids": [1.5]}, {"ids": ["²"]}, "status=new", [1], 7],
)  # fmt: skip
def test_stage_and_run_filters_of_the_wrong_type_answer_400(users, project, image_filter):
    add_image(project, seed=2)
    client = api_client(users["manager"])
    for url, body in (
        (f"/api/projects/{project.pk}/stage", {"stage": "fully_automatic", "filter": image_filter}),
        (f"/api/projects/{project.pk}/generation-runs/", {"mode": "auto", "filter": image_filter}),
    ):
        response = client.post(url, body, format="json")
        assert response.status_code == 400, (url, image_filter, response.content[:300])
        assert "filter" in response.json()


DEEP = "[" * 1000 + "]" * 1000


@pytest.mark.parametrize(
    "url",
    ["/api/auth/token/", "/api/projects/", "/api/projects/{p}/labels/", "/api/images/{i}/masks/",
     "/api/projects/{p}/stage", "/api/projects/{p}/generation-runs/", "/api/images/{i}/predict"],
)  # fmt: skip
def test_deeply_nested_json_answers_400_everywhere(users, project, url):
    image = add_image(project, seed=3)
    client = APIClient() if "auth" in url else api_client(users["admin"])
    nested_40 = json.dumps({"name": json.loads("[" * 40 + "]" * 40)})
    for body in (DEEP, nested_40, '{"a":' * 5000 + "1" + "}" * 5000):
        response = client.post(url.format(p=project.pk, i=image.pk), body, content_type="application/json")
        assert response.status_code == 400, (url, response.content[:300])
        assert "nested" in response.json()["detail"]


def test_a_body_over_the_limit_answers_json_413(users, project, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    client = api_client(users["admin"])
    json_body = json.dumps({"name": "x" * 2000})
    response = client.post("/api/projects/", json_body, content_type="application/json")
    assert response.status_code == 413 and "limit" in response.json()["detail"]
    response = client.post(f"/api/projects/{project.pk}/images/", {"note": "x" * 2000}, format="multipart")
    assert response.status_code == 413 and "limit" in response.json()["detail"]
    response = client.post("/api/auth/token/", f"username={'x' * 2000}&password=y",
                           content_type="application/x-www-form-urlencoded")  # fmt: skip
    assert response.status_code == 413 and response["Content-Type"] == "application/json"


def test_unknown_api_paths_answer_json(users):
    response = api_client(users["manager"]).get("/api/no/such/thing/")
    assert response.status_code == 404 and response.json() == {"detail": "Not Found"}
