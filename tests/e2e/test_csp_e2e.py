"""Every page runs under the Content-Security-Policy with no violation, loads nothing from another
host (the API docs included: Swagger UI is served from here) and has a favicon."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.annotator.annotation_fixtures import need_classic
from tests.e2e.conftest import login
from tests.e2e.test_annotate_e2e import picture

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def site(django_user_model):
    need_classic()
    from annotator.projects.services import create_label, create_project
    from tests.annotator.annotation_fixtures import add_picture

    admin = django_user_model.objects.create_superuser(username="chief", password="chief-pw-123456")
    project = create_project(name="Policy", creator=admin)
    create_label(project, name="thing", color="#00c853")
    image = add_picture(project, picture(1), name="p.png")
    return {"admin": admin, "project": project, "image": image}


def test_pages_run_with_no_csp_violation_and_only_local_resources(context, server, site):
    page = login(context, server, site["admin"])
    messages: list[str] = []
    foreign: list[str] = []
    failed: list[str] = []
    policies: dict[str, str] = {}
    host = urlsplit(server.url).netloc
    page.on("console", lambda m: messages.append(f"{page.url}: {m.type}: {m.text}"))
    page.on(
        "request",
        lambda r: foreign.append(r.url) if urlsplit(r.url).scheme in ("http", "https") and
        urlsplit(r.url).netloc != host else None,
    )  # fmt: skip
    page.on("requestfailed", lambda r: failed.append(f"{r.url}: {r.failure}"))

    def on_response(response) -> None:
        if response.request.resource_type == "document":
            policies[response.url] = response.headers.get("content-security-policy", "")
        if response.status >= 400:
            failed.append(f"{response.url}: HTTP {response.status}")

    page.on("response", on_response)
    project, image = site["project"], site["image"]
    for path, ready in [
        ("/", "main"),
        (f"/projects/{project.pk}/", "main"),
        (f"/projects/{project.pk}/stages/", "main"),
        (f"/projects/{project.pk}/dashboard/", "main"),
        (f"/images/{image.pk}/annotate/", "body[data-ready='true']"),
        (f"/projects/{project.pk}/review/", "main"),
        ("/admin/", "#content"),
        ("/api/docs/", ".swagger-ui .info .title"),
    ]:
        page.goto(path)
        page.wait_for_selector(ready)
        page.wait_for_load_state("networkidle")
    icon = page.request.get("/favicon.ico")
    assert icon.ok and "svg" in icon.headers["content-type"]

    violations = [m for m in messages if "Content Security Policy" in m or "Refused to" in m]
    assert violations == []
    assert foreign == []
    assert failed == []
    assert policies and all("script-src 'self'" in p for p in policies.values()), policies
