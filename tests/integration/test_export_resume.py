"""A killed export resumes and gives the same bytes, with real processes: PostgreSQL (a fresh
database), a private Redis broker and a real ``celery worker -Q export``.

An SA-1B export (privacy pass on, so each image costs real work) is queued; once its first shard
is complete, the worker's whole process group gets SIGKILL. The export is resumed on a new worker:
the shards finished before the kill are kept (same inode and mtime: not rewritten), and every
shard and the manifest are byte-identical to an uninterrupted export of the same data written by
``manage.py export --out``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.pipeline_support import PipelineServices
from tests.integration.services import DATABASE_URL, gate, unavailable

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
IMAGES = 36
SHARD = 6


def make_project() -> None:
    """Run inside ``manage.py shell`` of the test's database: a project with noisy photos and a
    few accepted masks on each."""
    import io

    import numpy as np
    from django.core.files.uploadedfile import SimpleUploadedFile
    from PIL import Image as PILImage

    from annotator.images.services import ingest_files
    from annotator.masks.services import create_mask
    from annotator.projects.services import create_project
    from engine.masks import encode_rle

    project = create_project(name="Export", slug="export", creator=None)
    rng = np.random.default_rng(0)
    uploads = []
    for index in range(IMAGES):
        buffer = io.BytesIO()
        PILImage.fromarray(rng.integers(0, 256, (360, 480, 3), dtype=np.uint8)).save(buffer, format="JPEG")
        uploads.append(SimpleUploadedFile(f"p{index:03d}.jpg", buffer.getvalue()))
    result = ingest_files(project, uploads, None)
    assert len(result.created) == IMAGES, result.as_dict()
    for image in result.created:
        for k in range(3):
            mask = np.zeros((360, 480), bool)
            mask[20 + 40 * k : 60 + 40 * k, 30 : 130 + 50 * k] = True
            create_mask(image, segmentation=encode_rle(mask), annotator=None, status="accepted")


@pytest.fixture
def services(tmp_path: Path) -> Iterator[PipelineServices]:
    if shutil.which("redis-server") is None:
        gate("redis-server is not installed (the test runs a private broker)")
    gate(unavailable())
    running = PipelineServices(tmp_path, DATABASE_URL, env={"MASKMILL_EXPORT_DIR": str(tmp_path / "exports")})
    running.create_database()
    try:
        running.start_redis()
        yield running
    finally:
        running.stop()
        running.drop_database()
        for log in sorted(tmp_path.glob("worker-*.log")):
            sys.stdout.write(f"--- {log.name} (tail)\n{''.join(log.read_text().splitlines(True)[-15:])}")


def start_export_worker(services: PipelineServices, name: str) -> subprocess.Popen:
    log = open(services.tmp / f"worker-{name}.log", "w")  # noqa: SIM115 (closed with the process)
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "annotator.celery:app", "worker", "-Q", "export",
         "--concurrency", "1", "--pool", "prefork", "--hostname", f"{name}@export-test",
         "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
        cwd=ROOT, env=services.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    services.workers[name] = process
    return process


def export_row(services: PipelineServices, export_id: int) -> tuple[str, int, int, str]:
    [row] = services.query(
        "SELECT status, images_done, images_total, error FROM exports_export WHERE id = %s", (export_id,)
    )
    return row


def test_killed_export_resumes_at_its_first_incomplete_shard_with_the_same_bytes(services: PipelineServices):
    services.manage("migrate", "--noinput", timeout=180)
    services.manage(
        "shell", "-c", "from tests.integration.test_export_resume import make_project; make_project()"
    )
    reference = services.tmp / "reference"
    services.manage(
        "export", "export", "--format", "sa1b", "--shard-size", str(SHARD), "--blur-faces",
        "--out", str(reference), "--no-progress", timeout=120,
    )  # fmt: skip

    out = services.manage("export", "export", "--format", "sa1b", "--shard-size", str(SHARD), "--blur-faces")
    export_id = int(out.split("export ", 1)[1].split()[0])
    folder = services.tmp / "exports" / str(export_id)
    start_export_worker(services, "a")

    # Wait for the first complete shard, then kill the worker while it writes the next ones.
    deadline = time.monotonic() + 60
    kept: dict[str, tuple[int, int]] = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            shards = json.loads((folder / "manifest.json").read_bytes())["shards"]
            if shards:
                kept = {
                    s["file"]: ((folder / s["file"]).stat().st_ino, (folder / s["file"]).stat().st_mtime_ns)
                    for s in shards
                }
                break
        time.sleep(0.01)
    assert kept, f"no shard was finished in 60 s: {export_row(services, export_id)}"
    process = services.workers.pop("a")
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)
    status, done, total, _ = export_row(services, export_id)
    assert status == "running" and done < total, "the export ended before the kill: nothing to resume"
    sys.stdout.write(f"killed the worker at {done}/{total} images with {len(kept)} shard(s) complete\n")

    services.manage("export", "export", "--export", str(export_id), "--resume")  # queued again
    start_export_worker(services, "b")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and export_row(services, export_id)[0] != "done":
        time.sleep(0.2)
    status, done, total, error = export_row(services, export_id)
    assert (status, done, total) == ("done", IMAGES, IMAGES), error

    for name, (inode, mtime) in kept.items():
        stat = (folder / name).stat()
        assert (stat.st_ino, stat.st_mtime_ns) == (inode, mtime), f"{name} was written again"
    names = sorted(p.name for p in reference.iterdir() if not p.name.startswith("."))
    assert names == sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert len([n for n in names if n.endswith(".tar")]) == IMAGES // SHARD
    for name in names:
        assert (folder / name).read_bytes() == (reference / name).read_bytes(), name
