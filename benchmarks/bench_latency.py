"""HTTP latency of one click on ``POST /api/images/{id}/predict`` against a real server, with
concurrent annotators, next to the in-process decoder and the official ``SamPredictor.predict``.

What it does, in one run:
1. a throw-away installation in a temporary folder (SQLite, media, a vit_b-sized ``custom`` SAM
   with seeded random weights saved as a checkpoint), a project with 1024x768 images and one
   annotator per client; the embeddings are computed up front (the platform's embed code), so the
   figures are for cached embeddings, as in the latency target;
2. gunicorn (gthread) on 127.0.0.1; each client logs in with a token, prepares its image, then
   clicks: a first click (multimask) and refinement clicks that send the previous logits handle
   back, a new object every few clicks, with an optional think time between clicks;
3. the same prompts in this process: our decoder (prompt encoder + mask decoder + masks at image
   resolution + RLE) and the official SamPredictor.predict with the same weights and embedding;
4. the same HTTP run and in-process timing with no model configured (the classic segmenter).

    python benchmarks/bench_latency.py [--clients 8] [--clicks 30] [--seconds 60] [--images 4]
        [--think-ms 0 250 1000] [--threads 8] [--torch-threads CPUS-1] [--runs 1] [--workdir DIR]

Prints a table; nothing is asserted. Target (docs/performance.md): vit_b, 8 clients, p50 <= 50 ms,
p99 <= 150 ms.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WIDTH, HEIGHT = 1024, 768


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scene(seed: int) -> bytes:
    """A 1024x768 JPEG with a few smooth blobs (objects to click on)."""
    from PIL import Image as PILImage
    from PIL import ImageDraw, ImageFilter

    rng = random.Random(seed)
    picture = PILImage.new("RGB", (WIDTH, HEIGHT), (rng.randrange(30, 90),) * 3)
    draw = ImageDraw.Draw(picture)
    for _ in range(12):
        x, y, r = rng.randrange(WIDTH), rng.randrange(HEIGHT), rng.randrange(30, 160)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.randrange(256) for _ in range(3)))
    buffer = io.BytesIO()
    picture.filter(ImageFilter.GaussianBlur(2)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------
# Installation


def environment(var: Path, model: dict | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "MASKMILL_VAR_DIR": str(var),
            "DATABASE_URL": f"sqlite:///{var / 'bench.sqlite3'}",
            "MEDIA_ROOT": str(var / "media"),
            "DEBUG": "1",
            "DJANGO_SETTINGS_MODULE": "annotator.settings",
            "MASKMILL_MODEL_TYPE": model["type"] if model else "",
            "MASKMILL_MODEL_CONFIG": json.dumps(model["config"]) if model else "",
            "MASKMILL_CHECKPOINT": model["checkpoint"] if model else "",
            "MASKMILL_PREFETCH_IMAGES": "0",
            "LOG_LEVEL": "WARNING",
        }
    )
    return env


def save_checkpoint(var: Path, seed: int) -> dict:
    """The official SAM with VIT_B_CONFIG sizes and seeded random weights, saved as our checkpoint."""
    import torch

    from tests.reference_models import VIT_B_CONFIG, official_sam

    official = official_sam(VIT_B_CONFIG, seed=seed)
    path = var / "vit_b-random.pth"
    torch.save(official.state_dict(), path)
    return {"type": "custom", "config": dict(VIT_B_CONFIG), "checkpoint": str(path), "official": official}


def install(var: Path, env: dict[str, str], clients: int, images: int) -> dict:
    """Migrate, create users/project/images, compute embeddings; returns ids and tokens."""
    script = f"""
import json, sys
sys.path.insert(0, {str(ROOT)!r})
import django; django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.authtoken.models import Token
from annotator.projects.services import add_member, create_project
from annotator.images.services import ingest_files
from annotator.images.embeddings import ensure_embedding
from benchmarks.bench_latency import scene
User = get_user_model()
manager = User.objects.create_user("manager", password="x")
project = create_project(name="Latency", creator=manager)
tokens = []
for i in range({clients}):
    user = User.objects.create_user(f"annotator{{i}}", password="x")
    add_member(project, user=user, role="annotator")
    tokens.append(Token.objects.create(user=user).key)
uploads = [SimpleUploadedFile(f"scene{{i}}.jpg", scene(i), content_type="image/jpeg")
           for i in range({images})]
result = ingest_files(project, uploads, None)
ids = [image.pk for image in result.created]
# One real encoder run; the other images get a copy of that embedding (decoding cost does not
# depend on the values, and a vit_b encode takes minutes on a busy 2-core machine).
from django.core.files.base import ContentFile
from annotator.images.models import Embedding
first = ensure_embedding(ids[0])  # None without a model (the classic segmenter needs none)
data = first.file.open("rb").read() if first is not None else b""
for image_id in ids[1:] if first is not None else []:
    copy = Embedding(image_id=image_id, model_version=first.model_version, dtype=first.dtype,
                     shape=first.shape, input_size=first.input_size, seconds=first.seconds)
    copy.file.save("embedding.npy", ContentFile(data), save=True)
print("RESULT" + json.dumps({{"images": ids, "tokens": tokens}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], env={**env, "CELERY_TASK_ALWAYS_EAGER": "0"}, cwd=ROOT,
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"setup failed:\n{done.stdout}\n{done.stderr}")
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])


class Server:
    """gunicorn (one process, gthread) on 127.0.0.1; stopped on exit, whatever happens."""

    def __init__(self, env: dict[str, str], threads: int, torch_threads: int | None) -> None:
        self.port = free_port()
        server_env = {**env, "OPENCV_FOR_THREADS_NUM": "1"}
        if torch_threads is not None:  # else the platform's default (MASKMILL_MODEL_THREADS)
            server_env.update(
                {
                    "MASKMILL_MODEL_THREADS": str(torch_threads),
                    "OMP_NUM_THREADS": str(torch_threads),
                    "MKL_NUM_THREADS": str(torch_threads),
                }
            )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "annotator.wsgi:application",
             "--bind", f"127.0.0.1:{self.port}",
             "--workers", "1", "--worker-class", "gthread", "--threads", str(threads), "--timeout", "300",
             "--keep-alive", "30", "--log-level", "warning"],
            env=server_env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"gunicorn exited:\n{self.process.stderr.read()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise SystemExit("gunicorn did not start within 120 s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# ------------------------------------------------------------------------------------------------
# Clients


def prompts_for(seed: int, count: int) -> list[dict]:
    """Click sequences: a multimask first click, then refinement clicks with the handle."""
    rng = random.Random(seed)
    bodies, points = [], []
    for n in range(count):
        if n % 4 == 0:
            points = []
        points.append(
            ([rng.uniform(50, WIDTH - 50), rng.uniform(50, HEIGHT - 50)], rng.random() < 0.8 or not points)
        )
        bodies.append(
            {
                "points": [[round(x, 2), round(y, 2)] for (x, y), _ in points],
                "labels": [1 if positive else 0 for _, positive in points],
                "multimask": len(points) == 1,
            }
        )
    return bodies


def client_run(port: int, token: str, image_id: int, bodies: list[dict], think_ms: float, seconds: float,
               seed: int, out: list, barrier: threading.Barrier) -> None:  # fmt: skip
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}

    def post(path: str, body: dict) -> tuple[int, dict, float]:
        started = time.perf_counter()
        connection.request("POST", path, json.dumps(body), headers)
        response = connection.getresponse()
        data = response.read()
        return response.status, json.loads(data or b"{}"), time.perf_counter() - started

    for _ in range(600):  # the embedding is cached on disk: this loads it into memory
        status, data, _ = post(f"/api/images/{image_id}/prepare", {})
        if data.get("state") == "ready":
            break
        time.sleep(0.2)
    post(f"/api/images/{image_id}/predict", {"points": [[10, 10]], "labels": [1]})  # warm-up
    barrier.wait(300)
    until = time.monotonic() + seconds
    rng = random.Random(seed)
    # Annotators do not all click at the same instant: each starts at a random point of its first
    # think time, as it would be after a while (without this the first round is a burst of 8
    # simultaneous clicks that no later round repeats, and it alone sets the p99).
    time.sleep(rng.uniform(0, think_ms / 1000))
    handle = None
    for body in bodies:
        if time.monotonic() > until:
            break
        if len(body["points"]) > 1 and handle:
            body = {**body, "mask_input": handle}
        status, data, seconds = post(f"/api/images/{image_id}/predict", body)
        if status != 200 or "masks" not in data:
            out.append(("error", status, str(data)[:200]))
            continue
        handle = data["logits_handle"]
        timing = data.get("timing_ms", {})
        out.append(
            (
                "ok",
                seconds,
                timing.get("decode", float("nan")),
                timing.get("queue", 0.0),
                timing.get("masks", float("nan")),
                timing,
            )
        )
        if think_ms:
            time.sleep(rng.uniform(0.5, 1.5) * think_ms / 1000)
    connection.close()


def http_run(env, setup, args, think_ms: float) -> dict:
    with Server(env, args.threads, args.torch_threads) as server:
        results: list = []
        barrier = threading.Barrier(args.clients)
        threads = []
        for i in range(args.clients):
            image_id = setup["images"][i % len(setup["images"])]
            bodies = prompts_for(1000 + i, args.clicks)
            threads.append(threading.Thread(
                target=client_run,
                args=(server.port, setup["tokens"][i], image_id, bodies, think_ms, args.seconds, i, results,
                      barrier),
            ))  # fmt: skip
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(args.seconds + 300)
        wall = time.monotonic() - started
    ok = [r for r in results if r[0] == "ok"]
    errors = [r for r in results if r[0] == "error"]
    rtt = [r[1] * 1000 for r in ok]
    return {
        "clicks": len(ok),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "p50": percentile(rtt, 50),
        "p90": percentile(rtt, 90),
        "p99": percentile(rtt, 99),
        "max": max(rtt) if rtt else float("nan"),
        "server_decode_p50": percentile([r[2] for r in ok], 50),
        "server_queue_p50": percentile([r[3] for r in ok], 50),
        "server_masks_p50": percentile([r[4] for r in ok], 50),
        "slowest": [(round(r[1] * 1000, 1), r[5]) for r in sorted(ok, key=lambda r: -r[1])[:5]],
        "wall": wall,
    }


# ------------------------------------------------------------------------------------------------
# In-process


def in_process_sam(model_info: dict, var: Path, repeats: int) -> dict:
    """Our decoding path vs the official SamPredictor.predict on the same weights and embedding."""
    from annotator.annotation.interactive import Prompts, decode_low_res, decode_state_for, rles_from_low_res
    from engine.sam import build_sam
    from tests.reference import reference

    official = model_info["official"]
    ours = build_sam("custom", checkpoint=model_info["checkpoint"], config=model_info["config"])
    ours.eval()
    from engine.embeddings import load_embedding
    from engine.transforms import preprocess_shape

    stored = next((var / "sam").rglob("embeddings/**/*.npy"))  # the server's cached embedding
    features = load_embedding(stored)
    input_size = preprocess_shape(HEIGHT, WIDTH, ours.image_encoder.img_size)
    state = decode_state_for(ours, features, (HEIGHT, WIDTH), input_size)  # as the server's cache holds it
    sam_predictor = reference("segment_anything").SamPredictor(official)
    sam_predictor.reset_image()
    sam_predictor.features = features
    sam_predictor.original_size = (HEIGHT, WIDTH)
    sam_predictor.input_size = input_size
    sam_predictor.is_image_set = True

    point = np.array([[400.0, 300.0]])
    label = np.array([1])
    prompts = Prompts(point, label, None, None, None, True)

    refine = Prompts(np.array([[400.0, 300.0], [520.0, 330.0]]), np.array([1, 0]), None, None, None, False)
    previous, _ = decode_low_res(ours, state, prompts, None)
    previous = previous[:1]

    def ours_once() -> None:
        low_res, _ = decode_low_res(ours, state, prompts, None)
        rles_from_low_res(ours, state, low_res)

    def decoder_only() -> None:
        decode_low_res(ours, state, prompts, None)

    def refine_once() -> None:
        low_res, _ = decode_low_res(ours, state, refine, previous)
        rles_from_low_res(ours, state, low_res)

    def official_once() -> None:
        sam_predictor.predict(point_coords=point, point_labels=label, multimask_output=True)

    figures = {}
    for name, fn in (
        ("ours", ours_once),
        ("decoder", decoder_only),
        ("refine", refine_once),
        ("official", official_once),
    ):
        fn()
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            fn()
            times.append((time.perf_counter() - started) * 1000)
        figures[name] = statistics.median(times)
    return figures


def in_process_classic(repeats: int) -> float:
    from PIL import Image as PILImage

    from engine.classic import ClassicPredictor

    pixels = np.asarray(PILImage.open(io.BytesIO(scene(0))).convert("RGB"))
    predictor = ClassicPredictor()
    predictor.set_image(pixels)
    times = []
    for i in range(repeats):
        started = time.perf_counter()
        predictor.predict(point_coords=np.array([[400.0 + i, 300.0]]), point_labels=np.array([1]))
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def print_distribution(rows: list[tuple[str, dict]], think_ms: list[float]) -> None:
    """Per think time: in how many runs both targets held, and the spread of p50 and p99."""
    print()
    print("Over the runs (target p50 <= 50 ms and p99 <= 150 ms):")
    for think in think_ms:
        prefix = f"vit_b, think {think:g} ms #"
        runs = [r for name, r in rows if name.startswith(prefix)]
        met = sum(1 for r in runs if r["p50"] <= 50 and r["p99"] <= 150)
        p50s = sorted(round(r["p50"], 1) for r in runs)
        p99s = sorted(round(r["p99"], 1) for r in runs)
        print(f"  think {think:g} ms: target met in {met} of {len(runs)} runs; p50 {p50s}; p99 {p99s}")


def installation(var: Path, clients: int, images: int) -> tuple[dict, dict[str, str], dict]:
    """The vit_b installation in ``var``: reused when an earlier call left one there for the same
    clients and images, else made (and its ids saved for the next call)."""
    var.mkdir(parents=True, exist_ok=True)
    model = save_checkpoint(var, seed=0)  # seeded: the same weights as the saved installation's
    env = environment(var / "sam", model)
    saved = var / "sam" / "setup.json"
    if saved.exists():
        setup = json.loads(saved.read_text())
        if setup.get("clients") == clients and len(setup["images"]) == images:
            print(f"reusing the installation in {var}", flush=True)
            return model, env, setup
        raise SystemExit(f"{var} holds an installation for other --clients/--images; use another --workdir")
    print(f"setting up in {var} (vit_b-sized random model, {images} images of {WIDTH}x{HEIGHT}, "
          f"embeddings computed first; this takes a while)", flush=True)  # fmt: skip
    (var / "sam").mkdir(parents=True)
    started = time.monotonic()
    setup = {**install(var / "sam", env, clients, images), "clients": clients}
    saved.write_text(json.dumps(setup))
    print(f"  setup {time.monotonic() - started:.0f} s", flush=True)
    return model, env, setup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--clicks", type=int, default=20, help="per client")
    parser.add_argument("--seconds", type=float, default=45, help="per run after warm-up, at most")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument(
        "--think-ms",
        type=float,
        nargs="+",
        default=[0.0, 250.0, 1000.0],
        help="mean pause between an answer and the client's next click",
    )
    parser.add_argument("--threads", type=int, default=8, help="gunicorn gthread threads")
    parser.add_argument(
        "--torch-threads",
        type=int,
        help="intra-op threads of the server's model thread and of the in-process figures "
        "(default: the platform's, every core but one)",
    )
    parser.add_argument("--repeats", type=int, default=20, help="in-process repetitions")
    parser.add_argument(
        "--runs", type=int, default=1, help="HTTP runs per think time (p50 / p99 spread over them)"
    )
    parser.add_argument("--skip-classic", action="store_true")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep the installation here and reuse it on the next call with the same --clients and "
        "--images (the setup computes a vit_b embedding: minutes on a busy machine)",
    )
    args = parser.parse_args()

    import torch

    from engine.runtime import default_model_threads, tune_malloc

    tune_malloc()  # as in the server, which tunes it when it loads the model
    torch_threads = args.torch_threads or default_model_threads()
    torch.set_num_threads(torch_threads)  # this script's own in-process figures, like the server
    rows = []
    with tempfile.TemporaryDirectory(prefix="maskmill-bench-") as tmp:
        var = Path(tmp) if args.workdir is None else args.workdir.resolve()
        model, env, setup = installation(var, args.clients, args.images)
        for think in args.think_ms:
            for run in range(args.runs):
                suffix = f" #{run + 1}" if args.runs > 1 else ""
                rows.append((f"vit_b, think {think:g} ms{suffix}", http_run(env, setup, args, think)))
                print(f"  {rows[-1][0]}: {rows[-1][1]}", flush=True)
        in_sam = in_process_sam(model, var, args.repeats)
        classic_ms = None
        if not args.skip_classic:
            env_c = environment(Path(tmp) / "classic", None)
            (Path(tmp) / "classic").mkdir()
            setup_c = install(Path(tmp) / "classic", env_c, args.clients, args.images)
            for think in args.think_ms:
                rows.append((f"classic, think {think:g} ms", http_run(env_c, setup_c, args, think)))
                print(f"  {rows[-1][0]}: {rows[-1][1]}", flush=True)
            classic_ms = in_process_classic(args.repeats)

    print()
    print(f"HTTP round trip of one click, {args.clients} concurrent clients, gunicorn gthread "
          f"1 process x {args.threads} threads, torch threads {torch_threads}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'scenario':<24} {'clicks':>6} {'err':>4} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
          f"{'max ms':>8} "
          f"{'decode p50':>11} {'masks p50':>10} {'queue p50':>10}")  # fmt: skip
    for name, r in rows:
        print(f"{name:<24} {r['clicks']:>6} {r['errors']:>4} {r['p50']:>8.1f} {r['p90']:>8.1f} "
              f"{r['p99']:>8.1f} "
              f"{r['max']:>8.1f} {r['server_decode_p50']:>8.1f} ms {r['server_masks_p50']:>7.1f} ms "
              f"{r['server_queue_p50']:>7.1f} ms")  # fmt: skip
        slowest = "; ".join(
            f"{rtt} ms ({', '.join(f'{k} {v:g}' for k, v in timing.items())})" for rtt, timing in r["slowest"]
        )
        print(f"    slowest: {slowest}")
        if r["first_error"]:
            print(f"    first error: {r['first_error']}")
    if args.runs > 1:
        print_distribution(rows, args.think_ms)
    print()
    print(f"In-process, one click (1024x768, multimask, medians of {args.repeats}):")
    print(
        f"  ours: prompt+mask decoder {in_sam['decoder']:.1f} ms; "
        f"+ masks at image size + RLE = {in_sam['ours']:.1f} ms; a refinement click (2 points + the "
        f"previous logits, one mask, with RLE) {in_sam['refine']:.1f} ms"
    )
    print(f"  official SamPredictor.predict (same weights, same embedding): {in_sam['official']:.1f} ms "
          f"(ours is {in_sam['official'] / in_sam['ours']:.1f}x faster)")  # fmt: skip
    if classic_ms is not None:
        print(f"  classic segmenter predict: {classic_ms:.1f} ms")
    print("Target (docs/performance.md): vit_b p50 <= 50 ms, p99 <= 150 ms with 8 concurrent clients.")


if __name__ == "__main__":
    main()
