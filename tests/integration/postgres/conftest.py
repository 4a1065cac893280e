"""Fixtures of the integration session: a real ``celery worker`` process on the test database."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.tiny_models import TINY_CONFIG, save_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _forget_model_versions():
    """The tests flush the database between them: rows this process remembers would be gone."""
    from annotator.training.services import forget_model_versions

    forget_model_versions()
    yield
    forget_model_versions()


@pytest.fixture(scope="session")
def worker_model_env(tmp_path_factory) -> dict[str, str]:
    """A tiny random ``custom`` SAM checkpoint for the worker."""
    import json

    checkpoint = save_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")
    return {
        "MASKMILL_MODEL_TYPE": "custom",
        "MASKMILL_CHECKPOINT": str(checkpoint),
        "MASKMILL_MODEL_CONFIG": json.dumps(TINY_CONFIG),
    }


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, worker_model_env, tmp_path_factory):
    """``celery worker`` on all queues, connected to this session's test database and Redis."""
    from django.db import connection

    test_db = connection.settings_dict["NAME"]
    parts = urlsplit(os.environ["DATABASE_URL"])
    database_url = urlunsplit(parts._replace(path=f"/{test_db}"))
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    env = {**os.environ, "DATABASE_URL": database_url, **worker_model_env}
    command = [
        sys.executable, "-m", "celery", "-A", "annotator.celery:app", "worker",
        "-Q", "embed,generate,train,export", "--concurrency", "1",
        "--hostname", f"integration-{os.getpid()}@%h",
        "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "INFO",
    ]  # fmt: skip
    log = log_path.open("wb")
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while "ready." not in log_path.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"celery worker did not start:\n{log_path.read_text(errors='replace')[-4000:]}")
            time.sleep(0.3)
        yield {"process": process, "log": log_path, "model": worker_model_env.get("MASKMILL_MODEL_TYPE", "")}
    finally:
        if process.poll() is None:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        log.close()
