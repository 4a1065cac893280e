"""Fixtures of the Label Studio app's unit tests: a project image linked to a Label Studio task,
basic-auth clients, and a small real HTTP server standing in for Label Studio's file storage."""

from __future__ import annotations

import base64
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotator.labelstudio.models import Connection, TaskLink
from annotator.labelstudio.regions import label_config

CONFIG = label_config([("cat", "#ff0000"), ("dog", "#00ff00")])


def basic_client(user) -> APIClient:
    token, _ = Token.objects.get_or_create(user=user)
    client = APIClient()
    raw = base64.b64encode(f"{user.get_username()}:{token.key}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {raw}")
    return client


class Files:
    """What the stand-in server serves: path → (status, headers, body); every request is logged."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.requests: list[tuple[str, str]] = []


@pytest.fixture
def storage():
    """A real HTTP server on 127.0.0.1 serving task images, as Label Studio's /data/upload does."""
    files = Files()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            files.requests.append((self.path, self.headers.get("Authorization", "")))
            status, headers, body = files.routes.get(self.path, (404, {}, b"not found"))
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    files.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield files
    server.shutdown()
    server.server_close()


@pytest.fixture
def image(project):
    """A 96x72 picture of a few flat shapes (the classic segmenter finds objects in it)."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from annotator.images.services import ingest_files
    from tests.integration.pipeline_support import shapes_png

    return ingest_files(project, [SimpleUploadedFile("shapes.png", shapes_png(3))], None).created[0]


@pytest.fixture
def connection(project, storage):
    return Connection.objects.create(
        project=project, url=storage.url, token="legacy-token-123", ls_project_id=7
    )


@pytest.fixture
def linked(connection, image):
    return TaskLink.objects.create(connection=connection, image=image, ls_task_id=101)


@pytest.fixture
def annotator_client(users):
    return basic_client(users["annotator"])
