"""Exactly once under faults, with real processes: PostgreSQL (a fresh database on the server of
``MASKMILL_TEST_DATABASE_URL``), a Redis broker of the test's own (a private ``redis-server`` on a
free 127.0.0.1 port, so it can be killed and restarted without touching the shared one) and real
``celery worker`` subprocesses.

One GenerationRun over 30 images goes through: the pool process of worker A killed with SIGKILL
in the middle of a task, a second worker joining, the broker killed and restarted, every database
connection of the workers terminated (twice), worker A killed whole (its unacknowledged message
comes back after the visibility timeout), the run resumed while it is running (every unfinished
item queued a second time) and started a second time, plus one vanished and one corrupt image.
Then: every good image has its masks exactly once, the two bad ones failed with their reasons,
nothing else failed.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.pipeline_support import PipelineServices, expected_mask_count, shapes_png
from tests.integration.services import DATABASE_URL, gate, unavailable
from tests.tiny_models import LOW_THRESHOLDS, TINY_CONFIG, save_tiny_checkpoint

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
IMAGES = 24
BAD = {"vanished": 3, "corrupt": 7}  # seeds of the two images broken before the run
DEADLINE = 150  # seconds for the whole run; the test stays well under 3 minutes


@pytest.fixture
def services(tmp_path: Path) -> Iterator[PipelineServices]:
    admin_url = DATABASE_URL
    if shutil.which("redis-server") is None:
        gate("redis-server is not installed (the test runs a private broker it can kill and restart)")
    gate(unavailable())
    running = PipelineServices(tmp_path, admin_url)
    running.create_database()
    try:
        running.start_redis()
        yield running
    finally:
        running.stop()
        running.drop_database()
        for log in sorted(tmp_path.glob("worker-*.log")):
            sys.stdout.write(f"--- {log.name} (tail)\n{''.join(log.read_text().splitlines(True)[-15:])}")


def prepare_project(services: PipelineServices) -> None:
    folder = services.tmp / "incoming"
    folder.mkdir()
    for seed in range(IMAGES):
        (folder / f"s{seed}.png").write_bytes(shapes_png(seed))
    checkpoint, config, generation = "", {}, {}
    if services.real_engine:
        checkpoint = str(services.tmp / "tiny-sam.pt")
        save_tiny_checkpoint(checkpoint)
        config, generation = TINY_CONFIG, {"fully_automatic": LOW_THRESHOLDS}
    services.manage(
        "shell", "-c",
        "from annotator.projects.services import create_project; "
        "from annotator.training.models import ModelVersion; "
        "p = create_project(name='Pipeline', slug='pipeline', creator=None); "
        f"p.active_model_version = ModelVersion.objects.create(family='custom', checkpoint={checkpoint!r}, "
        f"config={config!r}, name='tiny'); "
        f"p.settings['generation'] = {generation!r}; "
        "p.save(); "
        "from pathlib import Path; from annotator.images.services import ingest_files; "
        f"r = ingest_files(p, sorted(Path({str(folder)!r}).glob('*.png')), None); "
        f"assert len(r.created) == {IMAGES}, r.as_dict()",
    )  # fmt: skip
    files = dict(services.query("SELECT original_name, file FROM images_image"))
    media = services.tmp / "media"
    (media / files[f"s{BAD['vanished']}.png"]).unlink()
    (media / files[f"s{BAD['corrupt']}.png"]).write_bytes(b"\x89PNG\r\n\x1a\n not really")


def test_every_image_exactly_once_through_worker_broker_and_database_faults(services: PipelineServices):
    started = time.monotonic()
    services.manage("migrate", "--noinput", timeout=180)
    prepare_project(services)
    out = services.manage("generate", "pipeline")
    run_id = int(out.split("generation run ", 1)[1].split()[0])
    # Started twice: the second run takes nothing the first has done or is doing; only an image
    # whose item already failed (the broken ones, if worker a got to them) is tried again.
    again = services.manage("generate", "pipeline")
    retaken: list[tuple[str]] = []
    if "nothing to do" not in again:  # no run is created when nothing is left
        second_id = int(again.split("generation run ", 1)[1].split()[0])
        retaken = services.query(
            "SELECT i.original_name FROM stages_generationitem g JOIN images_image i ON i.id = g.image_id "
            "WHERE g.run_id = %s",
            (second_id,),
        )
    assert {name for (name,) in retaken} <= {f"s{seed}.png" for seed in BAD.values()}, retaken
    services.faults.append(f"run started twice: the second took {len(retaken)} images (failed ones)")
    services.start_worker("a")
    services.wait_done(run_id, 3, timeout=60)

    # 1. Worker A's pool process dies with SIGKILL in the middle of a task.
    item, pid = services.running_item(run_id, "a")
    os.kill(pid, signal.SIGKILL)
    services.faults.append(f"SIGKILL pool process {pid} of worker a while it computed item {item}")
    services.start_worker("b")

    # 2. The broker dies and comes back (its append-only file keeps the queued messages).
    services.wait_done(run_id, 6, timeout=60)
    services.kill_redis()
    time.sleep(1.0)
    services.start_redis()
    services.faults.append("SIGKILL redis-server, restarted on the same port 1 s later")

    # 3. The database drops every worker connection, twice, while tasks are running.
    for _ in range(2):
        item, _pid = services.running_item(run_id, "")
        dropped = services.terminate_worker_connections()
        assert dropped > 0, "no worker connection to drop: the run is not running"
        services.faults.append(f"pg_terminate_backend on {dropped} worker connections (item {item} running)")
        time.sleep(1.0)

    # 4. Worker A dies whole (main process and pool) mid-task; its message is unacknowledged.
    item, pid = services.running_item(run_id, "a")
    services.kill_worker("a")
    services.faults.append(f"SIGKILL worker a entirely while it computed item {item}")

    # 5. The run is resumed while running: every unfinished item is queued a second time.
    resumed = services.manage("generate", "pipeline", "--run", str(run_id), "--resume")
    services.faults.append(resumed.strip().splitlines()[0])
    services.start_worker("c")

    services.wait_done(run_id, IMAGES, timeout=max(DEADLINE - (time.monotonic() - started), 30))
    summary = services.manage("generate", "pipeline", "--run", str(run_id))
    sys.stdout.write("\n".join(["fault matrix:", *services.faults, summary]) + "\n")

    # Every image processed exactly once.
    [(status, total, done, failed)] = services.query(
        "SELECT status, total, done, failed FROM stages_generationrun WHERE id = %s", (run_id,)
    )
    assert (status, total, done, failed) == ("done", IMAGES, IMAGES - 2, 2)
    items = services.query(
        "SELECT i.original_name, g.status, g.mask_count, g.attempts, g.error, "
        "(SELECT count(*) FROM masks_mask m WHERE m.image_id = i.id), "
        "(SELECT count(DISTINCT m.generation_item_id) FROM masks_mask m WHERE m.image_id = i.id) "
        "FROM stages_generationitem g JOIN images_image i ON i.id = g.image_id WHERE g.run_id = %s",
        (run_id,),
    )
    assert len(items) == IMAGES
    by_seed = {int(name[1:-4]): row for name, *row in items}
    for seed, (item_status, mask_count, _attempts, error, masks, producers) in by_seed.items():
        if seed == BAD["vanished"]:
            assert (item_status, masks) == ("failed", 0) and "vanished" in error, error
        elif seed == BAD["corrupt"]:
            assert (item_status, masks) == ("failed", 0) and "not a usable image" in error, error
        else:
            assert item_status == "done", (seed, item_status, error)
            assert masks == mask_count > 0 and producers == 1, (seed, masks, mask_count, producers)
            if not services.real_engine:
                assert masks == expected_mask_count(seed), (seed, masks)
    retried = [seed for seed, row in by_seed.items() if row[2] > 1]
    assert retried, "no item was delivered twice: the faults did not hit a running task"
    (orphans,) = services.query(
        "SELECT count(*) FROM masks_mask m LEFT JOIN stages_generationitem g ON g.id = m.generation_item_id "
        "WHERE g.status IS DISTINCT FROM 'done'"
    )[0]
    assert orphans == 0
    generator = (
        "engine MaskGenerator, tiny random SAM" if services.real_engine else "cheap components generator"
    )
    sys.stdout.write(
        f"generator: {generator}; delivered more than once: {len(retried)}; lost: 0; duplicated masks: 0\n"
    )
