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

ROOT = Path(__file__).resolve().parents[3]

TINY_CONFIG = {
    "image_size": 128,
    "patch_size": 16,
    "encoder_embed_dim": 32,
    "encoder_depth": 2,
    "encoder_num_heads": 2,
    "encoder_global_attn_indexes": [1],
    "encoder_window_size": 4,
    "prompt_embed_dim": 32,
    "decoder_mlp_dim": 64,
    "decoder_num_heads": 2,
    "iou_head_hidden_dim": 32,
}


def engine_has_sam() -> bool:
    import importlib.util

    return all(
        importlib.util.find_spec(m) is not None
        for m in ("engine.sam", "engine.predictor", "engine.embeddings")
    )


@pytest.fixture(scope="session")
def worker_model_env(tmp_path_factory) -> dict[str, str]:
    """A tiny random ``custom`` SAM checkpoint for the worker, once ``engine.sam`` exists."""
    if not engine_has_sam():
        return {"MASKMILL_MODEL_TYPE": ""}
    import json

    import torch
    from engine.sam import build_sam

    torch.manual_seed(0)
    checkpoint = tmp_path_factory.mktemp("model") / "tiny.pt"
    torch.save(build_sam("custom", config=TINY_CONFIG).state_dict(), checkpoint)
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
