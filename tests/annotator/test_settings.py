"""Settings come from the environment with embedded defaults; production settings pass
``check --deploy``. Each case runs in a fresh interpreter, since settings are read at import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

DUMP = """
import json, django
from django.conf import settings
django.setup()
from annotator.celery import app
from django.core.files.storage import storages
print(json.dumps({
    "db": settings.DATABASES["default"]["ENGINE"], "db_name": str(settings.DATABASES["default"]["NAME"]),
    "broker": app.conf.broker_url, "transport": app.conf.broker_transport_options,
    "media": str(settings.MEDIA_ROOT), "storage": type(storages["default"]).__name__,
    "storage_backend": settings.STORAGES["default"]["BACKEND"], "debug": settings.DEBUG,
    "max_pixels": settings.MASKMILL_MAX_IMAGE_PIXELS, "model_store": str(settings.MASKMILL_MODEL_STORE),
    "queues": sorted(q.name for q in app.conf.task_queues), "acks_late": app.conf.task_acks_late,
    "route": app.amqp.router.route({}, "annotator.images.tasks.embed")["queue"].name,
    "logits": [settings.MASKMILL_LOGITS_STORE, settings.MASKMILL_REDIS_URL,
               str(settings.MASKMILL_LOGITS_DIR)],
    "conn": [settings.DATABASES["default"][k] for k in ("CONN_MAX_AGE", "CONN_HEALTH_CHECKS")],
}))
"""

PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "x7!kq2-production-secret-with-plenty-of-entropy-0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c",
    "ALLOWED_HOSTS": "maskmill.example.org",
    "DATABASE_URL": "postgres://maskmill:secret@db.example.org:5432/maskmill",
    "CELERY_BROKER_URL": "redis://redis.example.org:6379/0",
    "MASKMILL_S3_BUCKET": "maskmill-media",
    "AWS_S3_ENDPOINT_URL": "https://s3.example.org",
}


def run_python(code_or_args: list[str], **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MASKMILL_", "CELERY_", "AWS_"))}
    clean.pop("DATABASE_URL", None)
    clean.update(env, DJANGO_SETTINGS_MODULE="annotator.settings")
    return subprocess.run(
        [sys.executable, *code_or_args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120
    )


def dump(**env: str) -> dict:
    done = run_python(["-c", DUMP], **env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_defaults_need_no_server(tmp_path):
    values = dump(MASKMILL_VAR_DIR=str(tmp_path))
    assert values["db"] == "django.db.backends.sqlite3" and values["db_name"] == str(
        tmp_path / "maskmill.sqlite3"
    )
    assert values["broker"].startswith("filesystem://")
    assert values["transport"]["data_folder_in"] == str(tmp_path / "broker" / "queue")
    assert values["transport"]["control_folder"] == str(tmp_path / "broker" / "control")
    assert all((tmp_path / "broker" / name).is_dir() for name in ("queue", "processed", "control"))
    assert values["media"] == str(tmp_path / "media") and values["storage"] == "FileSystemStorage"
    assert values["max_pixels"] == 100_000_000 and values["model_store"] == str(tmp_path / "models")
    assert values["queues"] == ["embed", "export", "generate", "train"] and values["acks_late"] is True
    assert values["route"] == "embed" and values["debug"] is True
    assert values["logits"] == ["file", "", str(tmp_path / "logits")]  # handles shared through var/
    assert values["conn"] == [600, True]  # persistent, health-checked connections


def test_production_settings_from_the_environment():
    values = dump(**PRODUCTION, MASKMILL_MAX_IMAGE_PIXELS="50_000_000")
    assert values["db"] == "django.db.backends.postgresql"
    assert values["broker"] == "redis://redis.example.org:6379/0"
    assert values["storage_backend"] == "storages.backends.s3.S3Storage" and values["storage"] == "S3Storage"
    assert values["max_pixels"] == 50_000_000 and values["debug"] is False
    assert values["conn"] == [600, True]
    assert values["logits"][:2] == ["redis", "redis://redis.example.org:6379/0"]  # the broker's Redis
    amqp = dump(**{**PRODUCTION, "CELERY_BROKER_URL": "amqp://guest:guest@rabbit:5672//"})
    assert amqp["broker"] == "amqp://guest:guest@rabbit:5672//"
    assert amqp["logits"][:2] == ["file", ""]
    own = dump(**{**PRODUCTION, "MASKMILL_REDIS_URL": "redis://cache:6379/2"})
    assert own["logits"][:2] == ["redis", "redis://cache:6379/2"]


def test_secret_key_is_required_without_debug():
    done = run_python(["-c", "import django; django.setup()"], DEBUG="0")
    assert done.returncode != 0 and "SECRET_KEY must be set when DEBUG is off" in done.stderr


def test_bad_values_are_named():
    done = run_python(["-c", "import django; django.setup()"], MASKMILL_MODEL_CONFIG="{not json")
    assert "MASKMILL_MODEL_CONFIG is not valid JSON" in done.stderr
    done = run_python(["-c", "import django; django.setup()"], MASKMILL_ENCODER_PRECISION="fp8")
    assert "MASKMILL_ENCODER_PRECISION='fp8': use fp32, bf16 or int8" in done.stderr
    done = run_python(["-c", "import django; django.setup()"], DEBUG="maybe")
    assert "DEBUG='maybe' is not a boolean" in done.stderr
    done = run_python(["-c", "import django; django.setup()"], MASKMILL_LOGITS_STORE="redis")
    assert "MASKMILL_LOGITS_STORE=redis needs MASKMILL_REDIS_URL" in done.stderr


def test_check_deploy_is_clean_with_production_settings():
    done = run_python(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **PRODUCTION)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


# Two requests' worth of Django's request signals around a query, as a WSGI server sends them.
REQUESTS = """
import json, django
django.setup()
from django.core.signals import request_finished, request_started
from django.db import connection
seen = []
for _ in range(2):
    request_started.send(sender=None)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    seen.append(connection.connection)  # the object, not its id (a freed one's id may be reused)
    request_finished.send(sender=None)
print(json.dumps({"same": seen[0] is seen[1], "open_after": connection.connection is not None,
                  "max_age": connection.settings_dict["CONN_MAX_AGE"]}))
"""


def connection_reuse(code: str, tmp_path, **env: str) -> dict:
    done = run_python(["-c", code], MASKMILL_VAR_DIR=str(tmp_path), **env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_web_threads_keep_their_database_connection_between_requests(tmp_path):
    kept = connection_reuse(REQUESTS, tmp_path)
    assert kept == {"same": True, "open_after": True, "max_age": 600}
    per_request = connection_reuse(REQUESTS, tmp_path, DATABASE_CONN_MAX_AGE="0")
    assert per_request == {"same": False, "open_after": False, "max_age": 0}


def test_asgi_defaults_to_a_connection_per_request(tmp_path):
    code = REQUESTS.replace("import json, django\ndjango.setup()", "import json\nimport annotator.asgi")
    assert connection_reuse(code, tmp_path)["max_age"] == 0
    assert connection_reuse(code, tmp_path, DATABASE_CONN_MAX_AGE="30")["max_age"] == 30
