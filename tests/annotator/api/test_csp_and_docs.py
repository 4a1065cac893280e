"""The Content-Security-Policy header is on every response, and the API docs load only files
served here (Swagger UI from drf-spectacular-sidecar), so they work without internet."""

from __future__ import annotations

import re

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path", ["/", "/accounts/login/", "/api/docs/", "/api/schema/", "/healthz", "/admin/"]
)
def test_every_response_has_the_policy(path, users):
    client = Client()
    client.force_login(users["admin"])
    response = client.get(path)
    assert response.status_code == 200
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]


def test_api_docs_reference_only_local_files(users):
    client = Client()
    client.force_login(users["admin"])
    html = client.get("/api/docs/").content.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(s.startswith("/") for s in sources), sources
    assert "<script>" not in html  # the initialiser is a file too (the policy forbids inline scripts)
    from django.conf import settings
    from django.contrib.staticfiles import finders

    static_url = "/" + settings.STATIC_URL.lstrip("/")
    for source in sources:
        path = source.split("?")[0]
        if path.startswith(static_url):
            assert finders.find(path.removeprefix(static_url)), source
        else:
            assert client.get(path).status_code == 200, source


def test_favicon(users):
    response = Client().get("/favicon.ico")
    assert response.status_code == 302
    assert response["Location"].endswith("favicon.svg")
