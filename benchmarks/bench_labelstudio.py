"""Maskmill from Label Studio, measured against a real Label Studio 1.23 server on 127.0.0.1.

- interactive predictions through the ML backend protocol: 50 clicks sent as Label Studio sends
  them (``POST /ls/<project>/predict`` with a key point ``context``, basic auth), and the same 50
  through Label Studio's own API (``/api/ml/<id>/interactive-annotating``: Label Studio serialises
  the task and calls the backend); p50/p99 of each;
- for comparison, the same clicks on Maskmill's own ``POST /api/images/<id>/predict``;
- push and pull throughput for N images (default 200): push (upload, tasks, one prediction per
  image), a second push (nothing changed), pull of one brush annotation per task, a second pull.

Throw-away installation: a SQLite file, media and Label Studio's data in a temporary folder;
Maskmill's WSGI app served by a threaded server in this process; Label Studio from the test
suite's cached virtualenv (installed on first use, ``tests/integration/labelstudio_server.py``).
The model: ``--model vit_b`` (SAM ViT-B's architecture with seeded random weights: a click costs
what it costs with the official weights; the masks mean nothing), ``small`` (a small custom SAM)
or ``classic`` (the OpenCV segmenter).

    python benchmarks/bench_labelstudio.py [--model vit_b] [--clicks 50] [--images 200]

Prints the figures; nothing is asserted.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def configure(var: Path, model: str) -> None:
    """Environment of the throw-away installation; before Django reads its settings."""
    env = {
        "MASKMILL_VAR_DIR": str(var),
        "DATABASE_URL": f"sqlite:///{var / 'bench.sqlite3'}",
        "MEDIA_ROOT": str(var / "media"),
        "DJANGO_SETTINGS_MODULE": "annotator.settings",
        "MASKMILL_PREFETCH_IMAGES": "0",
        "MASKMILL_LOGITS_STORE": "file",
        "LOG_LEVEL": "WARNING",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
    }
    if model != "classic":
        import torch

        from engine.sam import build_sam
        from tests.reference_models import SMALL_CONFIG

        torch.manual_seed(0)
        checkpoint = var / f"{model}.pth"
        config = SMALL_CONFIG if model == "small" else None
        torch.save(build_sam("custom" if config else model, config=config).state_dict(), checkpoint)
        env.update(
            {
                "MASKMILL_MODEL_TYPE": "custom" if config else model,
                "MASKMILL_CHECKPOINT": str(checkpoint),
                "MASKMILL_MODEL_CONFIG": json.dumps(config or {}),
            }
        )
    os.environ.update(env)


def serve() -> str:
    """Maskmill's WSGI application on a threaded server on 127.0.0.1 (a free port)."""
    from django.core.servers.basehttp import (
        ThreadedWSGIServer,
        WSGIRequestHandler,
        get_internal_wsgi_application,
    )

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = ThreadedWSGIServer(("127.0.0.1", 0), Quiet, allow_reuse_address=True)
    server.set_app(get_internal_wsgi_application())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=["vit_b", "small", "classic"], default="vit_b")
    parser.add_argument("--clicks", type=int, default=50)
    parser.add_argument("--images", type=int, default=200)
    args = parser.parse_args()
    var = Path(tempfile.mkdtemp(prefix="bench-ls-"))
    configure(var, args.model)
    import django

    django.setup()
    import numpy as np
    import requests
    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.core.management import call_command
    from label_studio_sdk import LabelStudio
    from rest_framework.authtoken.models import Token

    from annotator.images.embeddings import ensure_embedding
    from annotator.images.services import ingest_files
    from annotator.labelstudio import client, sync
    from annotator.labelstudio.models import TaskLink
    from annotator.labelstudio.regions import brush_result, controls, label_config
    from annotator.masks.services import create_mask
    from annotator.projects.services import create_label, create_project
    from annotator.training.services import model_version_for
    from engine.masks import encode_rle
    from tests.integration import labelstudio_server as lss
    from tests.integration.pipeline_support import shapes_png

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user(username="bench", password="bench-pw-1", email=lss.USERNAME)
    token = Token.objects.create(user=user).key
    project = create_project(name="Bench", creator=user)
    create_label(project, name="shape", color="#ff8800")
    began = time.perf_counter()
    uploads = [SimpleUploadedFile(f"b{i}.png", shapes_png(i, 320, 240)) for i in range(args.images)]
    images = ingest_files(project, uploads, user).created
    for image in images:  # one mask per image, pushed as its prediction
        mask = np.zeros((image.height, image.width), bool)
        mask[40:120, 60 + image.pk % 50 : 160 + image.pk % 50] = True
        create_mask(image, segmentation=encode_rle(mask), annotator=user, status="accepted")
    print(f"setup: {len(images)} images of 320x240 with a mask each in {time.perf_counter() - began:.1f} s")
    maskmill = serve()

    with lss.running(var / "label-studio") as ls_url:
        ls = LabelStudio(base_url=ls_url, api_key=lss.TOKEN)
        connection = client.save_connection(project, url=ls_url, token=lss.TOKEN, user=user)
        figures: dict[str, float] = {}
        began = time.perf_counter()
        pushed = sync.push(connection)
        figures["push"] = time.perf_counter() - began
        began = time.perf_counter()
        again = sync.push(connection)
        figures["push again"] = time.perf_counter() - began
        assert again["tasks_sent"] == 0, again
        connection.refresh_from_db()
        task_of = dict(TaskLink.objects.values_list("image_id", "ls_task_id"))

        # interactive clicks on the first image: its embedding is computed up front, as when the
        # annotation page (or the first click) has prepared it
        image = images[0]
        version = model_version_for(project)
        if version is not None:
            ensure_embedding(image.pk, version.pk)
        backend = ls.ml.create(
            project=connection.ls_project_id,
            url=f"{maskmill}/ls/{project.pk}/",
            is_interactive=True,
            auth_method="BASIC_AUTH",
            basic_auth_user="bench",
            basic_auth_pass=token,
            title="maskmill",
        )
        # Label Studio adds a webhook to <backend>/webhook without credentials; the clicks and the
        # pull are measured here, not that webhook's refusals
        for hook in ls.webhooks.list(project=connection.ls_project_id):
            ls.webhooks.delete(hook.id)
        config = ls.projects.get(connection.ls_project_id).label_config
        rng = np.random.default_rng(0)

        def context() -> dict:
            x, y = rng.uniform(5, 95, 2)
            item = {
                "id": "c",
                "type": "keypointlabels",
                "from_name": "click",
                "to_name": "image",
                "original_width": image.width,
                "original_height": image.height,
                "is_positive": True,
                "value": {"x": float(x), "y": float(y), "width": 1, "keypointlabels": ["shape"]},
            }
            return {"result": [item]}

        session = requests.Session()
        auth = "Basic " + base64.b64encode(f"bench:{token}".encode()).decode()
        direct, through, page = [], [], []
        task = {"id": task_of[image.pk], "data": {"image": "ignored: the task is linked"}}
        for index in range(args.clicks + 2):  # two warm-up clicks of each kind
            body = {"tasks": [task], "label_config": config, "params": {"context": context()}}
            started = time.perf_counter()
            answer = session.post(
                f"{maskmill}/ls/{project.pk}/predict", json=body, headers={"Authorization": auth}
            )
            elapsed = time.perf_counter() - started
            assert answer.status_code == 200 and answer.json()["results"][0]["result"], answer.text[:300]
            if index >= 2:
                direct.append(elapsed * 1000)
            started = time.perf_counter()
            answer = session.post(
                f"{ls_url}/api/ml/{backend.id}/interactive-annotating",
                json={"task": task_of[image.pk], "context": context()},
                headers={"Authorization": f"Token {lss.TOKEN}"},
            )
            elapsed = time.perf_counter() - started
            assert answer.status_code == 200 and answer.json()["data"]["result"], answer.text[:300]
            if index >= 2:
                through.append(elapsed * 1000)
            # the same kind of click from Maskmill's own annotation API, for comparison
            x, y = rng.uniform(0.05, 0.95, 2)
            started = time.perf_counter()
            answer = session.post(
                f"{maskmill}/api/images/{image.pk}/predict",
                json={"points": [[float(x * image.width), float(y * image.height)]], "labels": [1]},
                headers={"Authorization": f"Token {token}"},
            )
            elapsed = time.perf_counter() - started
            assert answer.status_code == 200 and answer.json()["masks"], answer.text[:300]
            if index >= 2:
                page.append(elapsed * 1000)

        # one brush annotation per task, made through the SDK (not timed), then pulled
        brush = controls(label_config([("shape", "#ff8800")]))["brushlabels"]
        for image in images:
            drawn = np.zeros((image.height, image.width), bool)
            drawn[100:200, 20 + image.pk % 80 : 120 + image.pk % 80] = True
            ls.annotations.create(
                task_of[image.pk],
                result=[brush_result(drawn, "shape", brush, region_id="a")],
                was_cancelled=False,
            )
        began = time.perf_counter()
        pulled = sync.pull(connection, user)
        figures["pull"] = time.perf_counter() - began
        began = time.perf_counter()
        repeat = sync.pull(connection, user)
        figures["pull again"] = time.perf_counter() - began
        assert pulled["created"] == len(images) and repeat["created"] == 0, (pulled, repeat)

    model = "classic segmenter" if version is None else f"{args.model} ({version})"
    print(f"model: {model}; cores: {os.cpu_count()}; label-studio {lss.VERSION} (Django dev server)")
    print(f"{'interactive click, ms':44} {'p50':>8} {'p99':>8} {'n':>5}")
    for name, values in (
        ("POST /ls/<id>/predict (backend protocol)", direct),
        ("via Label Studio's API", through),
        ("POST /api/images/<id>/predict (Maskmill's)", page),
    ):
        print(f"{name:44} {statistics.median(values):8.1f} {percentile(values, 99):8.1f} {len(values):5d}")
    print(f"{'sync of ' + str(len(images)) + ' images':44} {'seconds':>8} {'images/s':>8}")
    for name, seconds in figures.items():
        print(f"{name:44} {seconds:8.1f} {len(images) / seconds:8.1f}")
    print(f"push: {pushed}\npull: {pulled}")


if __name__ == "__main__":
    main()
