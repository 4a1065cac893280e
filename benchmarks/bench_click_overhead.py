"""What one click on ``POST /api/images/{id}/predict`` costs besides decoding: SQL queries,
database connections opened, and request time minus the decoder's own ``Server-Timing``.

Runs in one process, each request through Django's whole WSGI handler (middleware,
authentication, the request_started/finished signals that open and close database connections),
on a throw-away installation: a SQLite file (as in the embedded setup) or a fresh PostgreSQL
database (``--postgres``, dropped afterwards), a tiny ``custom`` SAM with seeded weights (decoding
is a few ms, so the overhead is visible), one annotator holding the image's lease, its embedding
computed up front. Clicks refine: every one after the first sends the previous logits handle back,
as the annotation page does.

    python benchmarks/bench_click_overhead.py [--clicks 200] [--conn-max-age N] [--auth token|session]
        [--postgres postgres://postgres@127.0.0.1:5432/postgres] [--show-queries]

Prints a table; nothing is asserted. ``--conn-max-age`` sets DATABASE_CONN_MAX_AGE (unset: the
settings' default).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def configure(var: Path, conn_max_age: int | None, database_url: str | None) -> None:
    """Environment of a throw-away installation; must run before Django reads its settings."""
    import torch

    from engine.sam import build_sam
    from tests.reference_models import SMALL_CONFIG

    torch.manual_seed(0)
    checkpoint = var / "tiny-sam.pth"
    torch.save(build_sam("custom", config=dict(SMALL_CONFIG)).state_dict(), checkpoint)
    os.environ.update(
        {
            "MASKMILL_VAR_DIR": str(var),
            "DATABASE_URL": database_url or f"sqlite:///{var / 'bench.sqlite3'}",
            "MEDIA_ROOT": str(var / "media"),
            "DJANGO_SETTINGS_MODULE": "annotator.settings",
            "MASKMILL_MODEL_TYPE": "custom",
            "MASKMILL_MODEL_CONFIG": json.dumps(SMALL_CONFIG),
            "MASKMILL_CHECKPOINT": str(checkpoint),
            "MASKMILL_PREFETCH_IMAGES": "0",
            "MASKMILL_LOGITS_STORE": "file",
            "LOG_LEVEL": "WARNING",
        }
    )
    if conn_max_age is not None:
        os.environ["DATABASE_CONN_MAX_AGE"] = str(conn_max_age)


def install(auth: str) -> tuple[int, dict[str, str]]:
    """Migrate; a project, an annotator holding one image's lease; (image id, the WSGI headers that
    authenticate them: a token as API clients send, or the session cookie and CSRF token the
    annotation page sends)."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.core.management import call_command
    from django.test import Client
    from rest_framework.authtoken.models import Token

    from annotator.annotation import services
    from annotator.images.embeddings import ensure_embedding
    from annotator.images.services import ingest_files
    from annotator.projects.services import add_member, create_project
    from tests.annotator.annotation_fixtures import disk_picture

    call_command("migrate", verbosity=0)
    user_model = get_user_model()
    manager = user_model.objects.create_user("manager", password="x")
    annotator = user_model.objects.create_user("annotator", password="x")
    project = create_project(name="Overhead", creator=manager)
    add_member(project, user=annotator, role="annotator")
    upload = SimpleUploadedFile("disk.png", disk_picture(640, 480, center=(320, 240), radius=120))
    image = ingest_files(project, [upload], None).created[0]
    ensure_embedding(image.pk)
    services.open_image(image, annotator)
    if auth == "token":
        return image.pk, {"HTTP_AUTHORIZATION": f"Token {Token.objects.create(user=annotator).key}"}
    browser = Client()
    browser.force_login(annotator)
    csrf = "c" * 32
    cookie = f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"
    return image.pk, {
        "HTTP_COOKIE": f"{cookie}; {settings.CSRF_COOKIE_NAME}={csrf}",
        "HTTP_X_CSRFTOKEN": csrf,
    }


class Wsgi:
    """Requests through Django's own WSGI handler, closed like a WSGI server closes them (Django's
    test client skips the close_old_connections of request_started/finished, so it would never
    show what opening a connection per request costs)."""

    def __init__(self, headers: dict[str, str]) -> None:
        from django.core.handlers.wsgi import WSGIHandler

        self.handler, self.headers = WSGIHandler(), headers

    def post(self, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body or {}).encode()
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(data)),
            **self.headers,
            "HTTP_HOST": "127.0.0.1",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.input": io.BytesIO(data),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        status: list[str] = []
        response = self.handler(environ, lambda s, headers, exc_info=None: status.append(s))
        try:
            content = b"".join(response)
        finally:
            response.close()  # request_finished: what a WSGI server does after the last byte
        return int(status[0].split()[0]), json.loads(content or b"{}")


def run(clicks: int, auth: str) -> dict:
    from django.db import connection
    from django.db.backends.signals import connection_created

    image_id, headers = install(auth)
    client = Wsgi(headers)
    url = f"/api/images/{image_id}/predict"
    counts = {"queries": 0, "connections": 0}
    last_sql: list[str] = []

    def count_query(execute, sql, params, many, context):
        counts["queries"] += 1
        last_sql.append(sql)
        return execute(sql, params, many, context)

    def count_connection(**_) -> None:
        counts["connections"] += 1

    connection_created.connect(count_connection, weak=False)
    connection.execute_wrappers.append(count_query)

    def click(body: dict) -> tuple[dict, float, int, int]:
        before = dict(counts)
        last_sql.clear()
        started = time.perf_counter()
        status, answer = client.post(url, body)
        seconds = time.perf_counter() - started
        assert status == 200, answer
        return (
            answer,
            seconds,
            counts["queries"] - before["queries"],
            counts["connections"] - before["connections"],
        )

    for _ in range(600):  # loads the stored embedding into this process's cache
        if client.post(f"/api/images/{image_id}/prepare")[1].get("state") == "ready":
            break
        time.sleep(0.1)
    click({"points": [[320, 240]], "labels": [1]})  # warm-up: model load, first session row

    totals, overheads, query_counts, connections = [], [], [], []
    handle, points = None, []
    for n in range(clicks):
        if n % 4 == 0:
            points, handle = [], None
        points.append([300 + 5 * (n % 4), 230 + 3 * (n % 4)])
        body: dict = {"points": points, "labels": [1] * len(points), "multimask": len(points) == 1}
        if handle:
            body["mask_input"] = handle
        answer, seconds, count, new_connections = click(body)
        handle = answer["logits_handle"]
        inside = sum(answer["timing_ms"].values())  # queue + decode + encode_rle
        totals.append(seconds * 1000)
        overheads.append(seconds * 1000 - inside)
        query_counts.append(count)
        connections.append(new_connections)
    return {
        "clicks": clicks,
        "queries_per_click": statistics.mean(query_counts),
        "queries_max": max(query_counts),
        "connections_per_click": statistics.mean(connections),
        "request_ms_p50": statistics.median(totals),
        "overhead_ms_p50": statistics.median(overheads),
        "overhead_ms_mean": statistics.mean(overheads),
        "last_click_sql": list(last_sql),
    }


@contextlib.contextmanager
def postgres_database(admin_url: str | None) -> Iterator[str | None]:
    """A fresh database on the server of ``admin_url`` (its URL), dropped afterwards."""
    if not admin_url:
        yield None
        return
    import psycopg

    name = f"maskmill_overhead_{os.getpid()}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clicks", type=int, default=200)
    parser.add_argument(
        "--conn-max-age", type=int, default=None, help="DATABASE_CONN_MAX_AGE (default: settings)"
    )
    parser.add_argument(
        "--auth", choices=("token", "session"), default="token", help="API token or the page's session"
    )
    parser.add_argument("--postgres", metavar="ADMIN_URL", help="a PostgreSQL server to make a database on")
    parser.add_argument("--show-queries", action="store_true", help="print the SQL of the last click")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="maskmill-overhead-") as folder,
        postgres_database(args.postgres) as database_url,
    ):
        configure(Path(folder), args.conn_max_age, database_url)
        import django

        django.setup()
        from django.conf import settings

        result = run(args.clicks, args.auth)
        result["conn_max_age"] = settings.DATABASES["default"]["CONN_MAX_AGE"]
        result["auth"] = args.auth
        result["database"] = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    statements = result.pop("last_click_sql")
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value:.2f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    if args.show_queries:
        print("statements of the last click:", *(f"  {sql}" for sql in statements), sep="\n")


if __name__ == "__main__":
    main()
