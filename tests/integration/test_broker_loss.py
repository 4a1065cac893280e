"""A broker loss heals itself, with real processes: PostgreSQL, a private Redis broker without
persistence, a ``celery worker`` on the ``generate`` and ``embed`` queues and ``celery beat``.

A GenerationRun over the images of a fresh ingest goes on while Redis is killed and restarted
empty: every queued ``generate`` and ``embed`` message and the unacknowledged ones are gone. With
no manual step (no ``--resume``) beat's sweep queues the lost work again; the run finishes with
every image's masks exactly once and every image embedded once.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.pipeline_support import PipelineServices, shapes_png
from tests.integration.services import DATABASE_URL, gate, unavailable
from tests.tiny_models import LOW_THRESHOLDS, TINY_CONFIG, save_tiny_checkpoint

pytestmark = pytest.mark.integration

IMAGES = 16
DEADLINE = 150  # seconds from the broker's restart to the finished run


@pytest.fixture
def services(tmp_path: Path) -> Iterator[PipelineServices]:
    if shutil.which("redis-server") is None:
        gate("redis-server is not installed (the test runs a private broker it can kill and restart)")
    gate(unavailable())
    running = PipelineServices(
        tmp_path,
        DATABASE_URL,
        env={
            "MASKMILL_SWEEP_INTERVAL": "2",
            "MASKMILL_SWEEP_PENDING_SECONDS": "4",
            "MASKMILL_SWEEP_GRACE_SECONDS": "3",
            "MASKMILL_GENERATE_TIME_LIMIT": "40",
            "MASKMILL_TEST_GENERATE_DELAY": "0.5",
        },
    )
    running.create_database()
    try:
        running.start_redis(persistent=False)
        yield running
    finally:
        running.stop()
        running.drop_database()
        for log in sorted(tmp_path.glob("worker-*.log")):
            sys.stdout.write(f"--- {log.name} (tail)\n{''.join(log.read_text().splitlines(True)[-12:])}")


def test_a_run_finishes_on_its_own_after_the_broker_lost_every_message(services: PipelineServices):
    services.manage("migrate", "--noinput", timeout=180)
    folder = services.tmp / "incoming"
    folder.mkdir()
    for seed in range(IMAGES):
        (folder / f"s{seed}.png").write_bytes(shapes_png(seed))
    checkpoint = str(services.tmp / "tiny-sam.pt")
    save_tiny_checkpoint(checkpoint)
    services.manage(
        "shell", "-c",
        "from annotator.projects.services import create_project; "
        "from annotator.training.models import ModelVersion; "
        "p = create_project(name='Loss', slug='loss', creator=None); "
        f"p.active_model_version = ModelVersion.objects.create(family='custom', checkpoint={checkpoint!r}, "
        f"config={TINY_CONFIG!r}, name='tiny'); "
        f"p.settings['generation'] = {{'fully_automatic': {LOW_THRESHOLDS!r}}}; p.save(); "
        "from pathlib import Path; from annotator.images.services import ingest_files; "
        f"r = ingest_files(p, sorted(Path({str(folder)!r}).glob('*.png')), None); "
        f"assert len(r.created) == {IMAGES}, r.as_dict()",
    )  # fmt: skip
    out = services.manage("generate", "loss")
    run_id = int(out.split("generation run ", 1)[1].split()[0])
    services.start_worker("a", queues="generate,embed")
    services.wait_done(run_id, 3, timeout=90)

    services.kill_redis()  # every queued and unacknowledged message is lost with it
    time.sleep(1.0)
    services.start_redis(persistent=False)
    at_loss = services.item_counts(run_id)
    embedded_at_loss = services.query("SELECT count(*) FROM images_embedding")[0][0]
    restarted = time.monotonic()
    services.start_beat()  # as make run and compose run it; nobody resumes the run

    services.wait_done(run_id, IMAGES, timeout=DEADLINE)
    deadline = time.monotonic() + 60
    while (
        services.query("SELECT count(*) FROM images_embedding")[0][0] < IMAGES and time.monotonic() < deadline
    ):
        time.sleep(0.5)
    healed_in = time.monotonic() - restarted

    [(status, total, done, failed)] = services.query(
        "SELECT status, total, done, failed FROM stages_generationrun WHERE id = %s", (run_id,)
    )
    assert (status, total, done, failed) == ("done", IMAGES, IMAGES, 0)
    rows = services.query(
        "SELECT g.mask_count, g.attempts, (SELECT count(*) FROM masks_mask m WHERE m.image_id = g.image_id), "
        "(SELECT count(DISTINCT m.generation_item_id) FROM masks_mask m WHERE m.image_id = g.image_id) "
        "FROM stages_generationitem g WHERE g.run_id = %s",
        (run_id,),
    )
    duplicated = sum(1 for mask_count, _a, masks, producers in rows if masks != mask_count or producers != 1)
    lost = IMAGES - len([r for r in rows if r[2] > 0])
    embeddings = services.query("SELECT image_id, count(*) FROM images_embedding GROUP BY 1")
    assert (lost, duplicated) == (0, 0), rows
    assert len(embeddings) == IMAGES and all(n == 1 for _, n in embeddings)
    sweeps = (services.tmp / "worker-a.log").read_text().count("sweep: queued again")
    sys.stdout.write(
        f"broker loss: items at the loss {at_loss}, embeddings {embedded_at_loss}/{IMAGES}; healed "
        f"{healed_in:.0f} s after the restart by {sweeps} sweep(s); lost 0, duplicated 0, "
        f"deliveries per item {sorted(r[1] for r in rows)}\n"
    )
