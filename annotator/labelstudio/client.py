"""The project's Label Studio: its connection row, an SDK client for it, and the one way task
images are fetched from it.

Image URLs come from request bodies Label Studio sends (or from its task listing), so they are
never trusted as they are: a relative URL is resolved against the configured Label Studio URL, an
absolute one must point at that same scheme, host and port (the allow-list), redirects are not
followed, and the download is capped in bytes and in total time. That keeps the backend from
being used to reach any other address (SSRF).
"""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from django.conf import settings
from django.core.exceptions import ValidationError

from annotator.labelstudio.models import Connection
from annotator.projects.models import Project

CHUNK = 64 * 1024
_clients: dict[tuple[str, str], Any] = {}
_clients_lock = threading.Lock()


class FetchError(ValueError):
    """A task image that cannot be fetched; the message says why (a 4xx for the request)."""


def check_url(url: Any) -> str:
    """A Label Studio base URL (http/https, a host, no query or credentials), without a trailing slash."""
    if not isinstance(url, str) or len(url) > 500:
        raise ValidationError({"url": "must be Label Studio's base URL, e.g. http://localhost:8080"})
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError({"url": f"must be an http:// or https:// URL with a host, got {url!r}"})
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValidationError({"url": "must not carry credentials, a query or a fragment"})
    return url.strip().rstrip("/")


def save_connection(
    project: Project,
    *,
    url: str | None = None,
    token: str | None = None,
    ls_project_id: Any = None,
    user: Any = None,
) -> Connection:
    """Create or update the project's connection. A new URL forgets the old id mapping (another
    server's ids mean nothing here)."""
    connection = Connection.objects.filter(project=project).first()
    if connection is None and (not url or not token):
        raise ValidationError({"url": "a first connection needs both url and token"})
    if token is not None and (not isinstance(token, str) or not token.strip() or len(token) > 2000):
        raise ValidationError({"token": "must be a Label Studio API token"})
    if ls_project_id not in (None, ""):
        if isinstance(ls_project_id, bool) or not str(ls_project_id).isdigit() or int(ls_project_id) < 1:
            raise ValidationError({"ls_project": "must be a Label Studio project id (a positive integer)"})
        ls_project_id = int(ls_project_id)
    else:
        ls_project_id = None
    if connection is None:
        connection = Connection(
            project=project, created_by=user if getattr(user, "is_authenticated", False) else None
        )
    if url is not None:
        url = check_url(url)
        if connection.pk and url != connection.url:
            connection.tasks.all().delete()
            connection.ls_project_id = None
        connection.url = url
    if token is not None:
        connection.token = token.strip()
    if ls_project_id is not None and ls_project_id != connection.ls_project_id:
        connection.ls_project_id = ls_project_id
    connection.save()
    return connection


def sdk(connection: Connection) -> Any:
    """``label_studio_sdk.LabelStudio`` for the connection (one per URL and token in a process: a
    personal access token is exchanged for short-lived access tokens, which the client keeps)."""
    from label_studio_sdk import LabelStudio

    key = (connection.url, connection.token)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            if len(_clients) > 32:
                _clients.clear()
            client = _clients[key] = LabelStudio(
                base_url=connection.url, api_key=connection.token, timeout=settings.MASKMILL_LS_TIMEOUT
            )
    return client


def resolve(connection: Connection, url: Any) -> str:
    """The absolute URL of a task image, or FetchError when it is not on the Label Studio host."""
    if not isinstance(url, str) or not url or len(url) > 4000:
        raise FetchError("the task has no image URL (data.image)")
    absolute = urljoin(connection.url + "/", url)
    parts, allowed = urlsplit(absolute), urlsplit(connection.url)
    if parts.scheme not in ("http", "https"):
        raise FetchError(
            f"task image {url[:200]!r}: only http(s) URLs on the Label Studio host can be fetched"
        )

    def origin(p: Any) -> tuple[str, str, int]:
        return (p.scheme, (p.hostname or "").lower(), p.port or (443 if p.scheme == "https" else 80))

    if parts.username or parts.password or origin(parts) != origin(allowed):
        raise FetchError(
            f"task image {url[:200]!r} is not on the project's Label Studio ({connection.url}); "
            "Maskmill fetches images only from there"
        )
    return absolute


def fetch_image(connection: Connection, url: Any) -> bytes:
    """The bytes of a task image from the project's Label Studio (its token sent along), with a
    size cap and a limit on the whole download's time."""
    absolute = resolve(connection, url)
    max_bytes = settings.MASKMILL_URL_FETCH_MAX_BYTES
    limit = float(settings.MASKMILL_LS_FETCH_TIMEOUT)
    deadline = time.monotonic() + limit
    try:
        headers = dict(sdk(connection)._client_wrapper.get_headers())
    except Exception as error:  # the token exchange itself failed
        raise FetchError(
            f"cannot authenticate to Label Studio: {error.__class__.__name__}: {error}"
        ) from None
    try:
        with requests.get(
            absolute, headers=headers, stream=True, timeout=(5, limit), allow_redirects=False
        ) as response:
            if response.status_code != 200:
                raise FetchError(
                    f"Label Studio answered HTTP {response.status_code} for the task image {url[:200]!r}"
                )
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise FetchError(f"the task image is {declared} bytes, over the {max_bytes} byte limit")
            chunks, total = [], 0
            for chunk in response.iter_content(CHUNK):
                total += len(chunk)
                if total > max_bytes:
                    raise FetchError(f"the task image is over the {max_bytes} byte limit")
                if time.monotonic() > deadline:
                    raise FetchError(f"fetching the task image took longer than {limit:g} s")
                chunks.append(chunk)
    except requests.RequestException as error:
        raise FetchError(f"cannot fetch the task image {url[:200]!r}: {error.__class__.__name__}") from None
    if not total:
        raise FetchError(f"the task image {url[:200]!r} is empty")
    return b"".join(chunks)
