"""A cheap, deterministic, real mask generator for the pipeline tests, and images it finds
objects in. It honours the MaskGenerator record contract (COCO RLE, XYWH bbox, scores, prompt
point, crop box), so the platform code under test is the same as with the model; the tests point
``MASKMILL_MASK_GENERATOR`` at ``components_generator`` when engine.automatic is not available
(or to keep a fault-injection run short)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np
from PIL import Image as PILImage

from engine.masks import encode_rle, rle_to_bbox

ROOT = Path(__file__).resolve().parents[2]


def shapes_image(seed: int, width: int = 96, height: int = 72) -> np.ndarray:
    """A dark image with 2-5 bright non-touching rectangles (how many depends on the seed)."""
    rng = np.random.default_rng(seed)
    pixels = np.full((height, width, 3), 20, dtype=np.uint8)
    count = 2 + seed % 4
    cell_w = width // count
    for i in range(count):
        x0 = i * cell_w + 2 + int(rng.integers(0, 3))
        y0 = 4 + int(rng.integers(0, height // 3))
        w = max(cell_w - 8, 4)
        h = int(rng.integers(8, height - y0 - 2))
        pixels[y0 : y0 + h, x0 : x0 + w] = rng.integers(150, 255, size=3, dtype=np.uint8)
    return pixels


def shapes_png(seed: int, width: int = 96, height: int = 72) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(shapes_image(seed, width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def expected_mask_count(seed: int) -> int:
    return 2 + seed % 4


class ComponentsGenerator:
    """Bright connected components as masks. ``MASKMILL_TEST_GENERATE_DELAY`` seconds of sleep
    stand in for the model's time, so a test can kill a worker while a task is running."""

    def __init__(self, min_area: int = 10) -> None:
        self.min_area = min_area

    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        delay = float(os.environ.get("MASKMILL_TEST_GENERATE_DELAY", "0"))
        if delay:
            time.sleep(delay)
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        count, labels, stats, centroids = cv2.connectedComponentsWithStats((gray > 100).astype(np.uint8), 4)
        height, width = gray.shape
        records = []
        for index in range(1, count):
            if stats[index, cv2.CC_STAT_AREA] < self.min_area:
                continue
            rle = encode_rle(labels == index)
            records.append(
                {
                    "segmentation": rle,
                    "area": int(stats[index, cv2.CC_STAT_AREA]),
                    "bbox": rle_to_bbox(rle),
                    "predicted_iou": 0.9,
                    "point_coords": [[float(centroids[index][0]), float(centroids[index][1])]],
                    "stability_score": 0.98,
                    "crop_box": [0, 0, width, height],
                }
            )
        return records


def components_generator(model_version: Any, params: dict[str, Any]) -> ComponentsGenerator:
    return ComponentsGenerator()


class _Slowed:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        delay = float(os.environ.get("MASKMILL_TEST_GENERATE_DELAY", "0"))
        if delay:
            time.sleep(delay)
        return self.inner.generate(image)


def slow_engine_generator(model_version: Any, params: dict[str, Any]) -> _Slowed:
    """The real engine generator (annotator's default factory), after the same test delay."""
    from annotator.stages.generation import engine_mask_generator

    return _Slowed(engine_mask_generator(model_version, params))


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PipelineServices:
    """A fresh PostgreSQL database, a private Redis broker and ``celery worker`` processes, for the
    fault-injection test and the pipeline benchmark."""

    def __init__(self, tmp: Path, admin_url: str, env: dict[str, str] | None = None) -> None:
        import psycopg

        self.psycopg = psycopg
        self.tmp = tmp
        self.admin_url = admin_url
        self.db_name = f"maskmill_pipeline_{uuid.uuid4().hex[:10]}"
        self.db_url = _with_database(admin_url, self.db_name)
        self.redis_port = _free_port()
        self.redis: subprocess.Popen | None = None
        self.workers: dict[str, subprocess.Popen] = {}
        self.faults: list[str] = []
        self.extra_env = env or {}
        # The real MaskGenerator on a tiny random SAM (every worker loads the same checkpoint).
        self.real_engine = True

    # --- processes -------------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO"))}
        env.update(
            DJANGO_SETTINGS_MODULE="tests.integration.pipeline_settings",
            DATABASE_URL=self.db_url,
            CELERY_BROKER_URL=f"redis://127.0.0.1:{self.redis_port}/0",
            MASKMILL_VAR_DIR=str(self.tmp / "var"),
            MEDIA_ROOT=str(self.tmp / "media"),
            MASKMILL_MASK_GENERATOR="tests.integration.pipeline_support."
            + ("slow_engine_generator" if self.real_engine else "components_generator"),
            # Long enough per image that the faults land on running tasks.
            MASKMILL_TEST_GENERATE_DELAY="0.8",
            OMP_NUM_THREADS="1",
            MASKMILL_BROKER_VISIBILITY_TIMEOUT="8",
            MASKMILL_GENERATE_MAX_ATTEMPTS="6",
            PYTHONPATH=str(ROOT),
            LOG_LEVEL="WARNING",
        )
        env.update(self.extra_env)
        return env

    def manage(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env(), capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
        assert done.returncode == 0, f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def start_redis(self, persistent: bool = True) -> None:
        """The test's redis-server; ``persistent=False``: no append-only file, so a restart loses
        every queued and unacknowledged message."""
        (self.tmp / "redis").mkdir(exist_ok=True)
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes" if persistent else "no", "--appendfsync", "always",
             "--dir", str(self.tmp / "redis"), "--logfile", str(self.tmp / "redis.log")],
        )  # fmt: skip
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.redis_port), 0.2):
                return
            time.sleep(0.05)
        raise AssertionError("the test's redis-server did not start")

    def kill_redis(self) -> None:
        assert self.redis is not None
        self.redis.send_signal(signal.SIGKILL)
        self.redis.wait(10)

    def start_worker(self, name: str, queues: str = "generate") -> subprocess.Popen:
        log = open(self.tmp / f"worker-{name}.log", "w")  # noqa: SIM115 (closed with the process)
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "annotator.celery:app", "worker", "-Q", queues,
             "--concurrency", "1", "--pool", "prefork", "--hostname", f"{name}@pipeline-test",
             "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
            cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.workers[name] = process
        return process

    def start_beat(self) -> subprocess.Popen:
        """``celery beat`` with the database scheduler, as ``make run`` and compose run it; kept
        with the workers (stopped by ``stop``)."""
        log = open(self.tmp / "worker-beat.log", "w")  # noqa: SIM115 (closed with the process)
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "annotator.celery:app", "beat", "--loglevel", "INFO",
             "--schedule", str(self.tmp / "beat-schedule")],
            cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.workers["beat"] = process
        return process

    def kill_worker(self, name: str) -> None:
        """SIGKILL the worker's whole process group: main process and pool, no goodbye."""
        process = self.workers.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    def stop(self) -> None:
        for name in list(self.workers):
            self.kill_worker(name)
        if self.redis is not None and self.redis.poll() is None:
            self.kill_redis()

    # --- database --------------------------------------------------------------------------------

    def admin(self):
        return self.psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5)

    def create_database(self) -> None:
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{self.db_name}"')

    def drop_database(self) -> None:
        with self.admin() as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (self.db_name,)
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}"')

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self.psycopg.connect(self.db_url, autocommit=True, connect_timeout=5) as conn:
            return conn.execute(sql, params).fetchall()

    def terminate_worker_connections(self) -> int:
        with self.admin() as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> "
                "pg_backend_pid()",
                (self.db_name,),
            ).fetchall()
        return len(rows)

    # --- the run ---------------------------------------------------------------------------------

    def item_counts(self, run_id: int) -> dict[str, int]:
        return dict(
            self.query(
                "SELECT status, count(*) FROM stages_generationitem WHERE run_id = %s GROUP BY 1", (run_id,)
            )
        )

    def running_item(self, run_id: int, worker_prefix: str, timeout: float = 30) -> tuple[int, int]:
        """(item id, pid) of an item that a live process of ``worker_prefix`` is computing now
        (a claim left behind by a killed process has a dead pid and is passed over)."""
        deadline = time.monotonic() + timeout
        with self.psycopg.connect(self.db_url, autocommit=True, connect_timeout=5) as conn:
            while time.monotonic() < deadline:
                rows = conn.execute(
                    "SELECT id, worker FROM stages_generationitem WHERE run_id = %s AND status = 'running' "
                    "AND worker LIKE %s ORDER BY started_at DESC",
                    (run_id, f"{worker_prefix}%@%"),
                ).fetchall()
                for item_id, worker in rows:
                    pid = int(worker.rsplit(":", 1)[1])
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, 0)
                        return item_id, pid
                time.sleep(0.05)
        raise AssertionError(
            f"no item running on worker {worker_prefix!r} within {timeout}s: {self.item_counts(run_id)}"
        )

    def wait_done(self, run_id: int, at_least: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            counts = self.item_counts(run_id)
            if counts.get("done", 0) + counts.get("failed", 0) >= at_least:
                return
            time.sleep(0.2)
        raise AssertionError(f"run {run_id}: fewer than {at_least} items finished in {timeout}s: {counts}")
