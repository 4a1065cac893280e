"""The sync API and command without a Label Studio (the real round trip is in
tests/integration/test_labelstudio_server.py): the connection (token stored, never shown), who may
use it, and clear 4xx answers when the input or Label Studio is wrong."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from annotator.labelstudio.models import Connection, TaskLink

pytestmark = pytest.mark.django_db


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_the_connection_keeps_the_token_to_itself(project, users):
    url = f"/api/projects/{project.pk}/labelstudio"
    manager = api(users["manager"])
    assert manager.get(url).json() == {"connected": False}
    saved = manager.put(url, {"url": "http://ls.example:8080/", "token": "secret-token-1"}, format="json")
    assert saved.status_code == 200, saved.content
    body = saved.json()
    assert body["url"] == "http://ls.example:8080" and body["has_token"] and "secret-token-1" not in str(body)
    assert body["backend_url"] == f"/ls/{project.pk}/"
    assert Connection.objects.get(project=project).token == "secret-token-1"
    assert api(users["annotator"]).get(url).status_code == 403
    assert api(users["outsider"]).get(url).status_code == 404
    assert manager.delete(url).status_code == 204 and not Connection.objects.exists()


@pytest.mark.parametrize(
    "body, field",
    [
        ({"url": "ftp://ls.example", "token": "t"}, "url"),
        ({"url": "http://user:pw@ls.example", "token": "t"}, "url"),
        ({"url": "http://ls.example"}, "url"),  # a first connection needs a token
        ({"url": "http://ls.example", "token": "t", "ls_project": "seven"}, "ls_project"),
        ({"url": "http://ls.example", "token": "t", "extra": 1}, "body"),
    ],
)
def test_bad_connections_are_refused(project, users, body, field):
    answer = api(users["manager"]).put(f"/api/projects/{project.pk}/labelstudio", body, format="json")
    assert answer.status_code == 400 and field in answer.json(), answer.content
    assert not Connection.objects.exists()


def test_a_new_url_forgets_the_old_mapping(project, users, connection, linked):
    client = api(users["manager"])
    client.put(f"/api/projects/{project.pk}/labelstudio", {"url": "http://other.example"}, format="json")
    connection.refresh_from_db()
    assert connection.ls_project_id is None and not TaskLink.objects.exists()


def test_unreachable_label_studio_is_a_422_with_the_reason(project, users, settings):
    from tests.integration.labelstudio_server import free_port

    settings.MASKMILL_LS_TIMEOUT = 5
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    answer = api(users["manager"]).post(
        f"/api/projects/{project.pk}/labelstudio/push", {"url": url, "token": "t"}, format="json"
    )
    assert answer.status_code == 422 and "cannot reach Label Studio" in answer.json()["detail"]
    pull = api(users["manager"]).post(f"/api/projects/{project.pk}/labelstudio/pull", {}, format="json")
    assert pull.status_code == 400 and "ls_project" in pull.json()


def test_the_command_says_what_is_missing(project):
    with pytest.raises(CommandError, match="not connected"):
        call_command("labelstudio", "pull", project.slug)
    with pytest.raises(CommandError, match="no project"):
        call_command("labelstudio", "push", "nope")
    with pytest.raises(CommandError, match="http:// or https:// URL"):
        call_command("labelstudio", "push", project.slug, "--url", "ftp://x", "--token", "t")


def test_the_page_shows_the_backend_url(project, users, client):
    client.force_login(users["manager"])
    page = client.get(f"/projects/{project.pk}/labelstudio/")
    assert page.status_code == 200 and f"/ls/{project.pk}/" in page.content.decode()
    client.force_login(users["annotator"])
    assert client.get(f"/projects/{project.pk}/labelstudio/").status_code == 403
