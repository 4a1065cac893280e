"""Export throughput and memory: images/s and masks/s per format, peak RSS, on SQLite and
PostgreSQL, and COCO export beside label-studio-sdk's brush-to-COCO converter on the same masks.

A synthetic project (``--images`` small JPEGs, ``--masks`` masks each, five labels) is written
straight into a fresh database; images 0..199 are split ``val``, the next 1,000 ``train``, the rest
``test``. Each measurement is one export run by ``annotator.exports.services.run_export`` in a child
process of its own, so its peak RSS (ru_maxrss) is that export's alone:

- every format on the 1,000 ``train`` images (throughput);
- SA-1B on the 200 ``val`` images and on every image (memory must not grow with the images);
- on the ``val`` images: our COCO export, and Label Studio's ``Converter(...).convert(tasks,
  Format.BRUSH_TO_COCO)`` reading our Label Studio export of the same masks.

    python benchmarks/bench_export.py [--images 2000] [--masks 50] \\
        [--postgres postgres://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
SIZE = (48, 64)  # height, width of the synthetic images


def child_env(var: Path, database_url: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        MASKMILL_VAR_DIR=str(var),
        DATABASE_URL=database_url or f"sqlite:///{var / 'bench.sqlite3'}",
        MEDIA_ROOT=str(var / "media"),
        DJANGO_SETTINGS_MODULE="annotator.settings",
        MASKMILL_MODEL_TYPE="",
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    return env


def setup_django() -> None:
    import django

    django.setup()


def populate(images: int, masks: int) -> None:
    """Migrate, then one project with the images and masks, written in bulk."""
    import io

    import cv2
    import numpy as np
    from django.conf import settings
    from django.core.management import call_command
    from PIL import Image as PILImage

    from annotator.images.models import Image
    from annotator.masks.models import Mask
    from annotator.projects.models import Label, Project
    from engine.masks import encode_rle, rle_area, rle_to_bbox

    call_command("migrate", verbosity=0)
    project = Project.objects.create(name="Bench", slug="bench")
    labels = [Label.objects.create(project=project, name=f"label{i}", color="#ff0000") for i in range(5)]
    height, width = SIZE
    rng = np.random.default_rng(0)
    shapes = []
    for _ in range(masks):
        mask = np.zeros(SIZE, np.uint8)
        cv2.circle(
            mask,
            (int(rng.integers(4, width - 4)), int(rng.integers(4, height - 4))),
            int(rng.integers(2, 14)),
            1,
            -1,
        )
        rle = encode_rle(mask.astype(bool))
        shapes.append((rle, rle_to_bbox(rle), rle_area(rle)))
    media = Path(settings.MEDIA_ROOT) / "bench"
    media.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(images):
        buffer = io.BytesIO()
        PILImage.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
            buffer, format="JPEG"
        )
        (media / f"{index}.jpg").write_bytes(buffer.getvalue())
        split = "val" if index < 200 else "train" if index < 1200 else "test"
        rows.append(Image(project=project, file=f"bench/{index}.jpg", original_name=f"{index}.jpg",
                          sha256=f"{index:064d}", width=width, height=height, split=split))  # fmt: skip
    Image.objects.bulk_create(rows, batch_size=1000)
    batch = []
    for image_id in Image.objects.filter(project=project).values_list("id", flat=True):
        for k, (rle, bbox, area) in enumerate(shapes):
            batch.append(Mask(project=project, image_id=image_id, segmentation=rle, bbox=bbox, area=area,
                              label=labels[k % 5], status="accepted", source="auto", predicted_iou=0.9,
                              stability_score=0.95, point_coords=[[1.0, 2.0]],
                              crop_box=[0, 0, width, height]))  # fmt: skip
        if len(batch) >= 20_000:
            Mask.objects.bulk_create(batch, batch_size=5000)
            batch = []
    Mask.objects.bulk_create(batch, batch_size=5000)


def export_once(fmt: str, splits: list[str], out: Path, options: dict) -> dict:
    from annotator.exports import services
    from annotator.projects.models import Project

    project = Project.objects.get(slug="bench")
    export = services.create_export(project, fmt, filter_data={"split": splits} if splits else {},
                                    options=options, out_dir=out, enqueue=False)  # fmt: skip
    began = time.perf_counter()
    export = services.run_export(export.pk)
    seconds = time.perf_counter() - began
    assert export.status == "done", export.error
    return {"seconds": seconds, "images": export.images_done, "masks": export.masks_done,
            "bytes": sum(f["bytes"] for f in export.files)}  # fmt: skip


def ls_convert(tasks: Path, config: Path, out: Path) -> dict:
    from label_studio_sdk.converter import Converter
    from label_studio_sdk.converter.converter import Format

    # A Label Studio export gives every task its id; ours leaves it to the importing Label Studio.
    with_ids = out.parent / "tasks-with-ids.json"
    with_ids.write_text(json.dumps([{"id": i, **t} for i, t in enumerate(json.loads(tasks.read_bytes()), 1)]))
    tasks = with_ids
    converter = Converter(config=str(config), project_dir=str(out), download_resources=False)
    began = time.perf_counter()
    converter.convert(str(tasks), str(out), Format.BRUSH_TO_COCO, is_dir=False)
    seconds = time.perf_counter() - began
    doc = json.loads((out / "result_coco.json").read_bytes())
    return {"seconds": seconds, "images": len(doc["images"]), "masks": len(doc["annotations"])}


def child(argv: list[str]) -> None:
    setup_django()
    kind = argv[0]
    if kind == "setup":
        result = {"ok": populate(int(argv[1]), int(argv[2]))}
    elif kind == "export":
        result = export_once(
            argv[1], [s for s in argv[2].split(",") if s], Path(argv[3]), json.loads(argv[4])
        )
    else:
        result = ls_convert(Path(argv[1]), Path(argv[2]), Path(argv[3]))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def run_child(env: dict[str, str], *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"child {args[:2]} failed:\n{done.stdout}\n{done.stderr}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


@contextlib.contextmanager
def postgres_database(admin_url: str | None) -> Iterator[str | None]:
    if not admin_url:
        yield None
        return
    import psycopg

    name = f"maskmill_bench_export_{os.getpid()}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


def bench(
    database: str, database_url: str | None, images: int, masks: int, formats: list[str]
) -> list[tuple]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="maskmill-bench-export-") as folder:
        var = Path(folder)
        env = child_env(var, database_url)
        began = time.perf_counter()
        run_child(env, "setup", str(images), str(masks))
        print(
            f"[{database}] {images} images x {masks} masks written in {time.perf_counter() - began:.1f} s",
            flush=True,
        )
        for fmt in formats:
            result = run_child(env, "export", fmt, "train", str(var / f"out-{fmt}"), "{}")
            rows.append((database, fmt, "train", result))
            print(f"[{database}] {fmt}: {result}", flush=True)
        if database == "sqlite":
            for splits in ("val", ""):
                result = run_child(env, "export", "sa1b", splits, str(var / f"rss-{splits or 'all'}"), "{}")
                rows.append((database, "sa1b (memory)", splits or "all", result))
                print(f"[{database}] sa1b {splits or 'all'}: {result}", flush=True)
            ours = run_child(env, "export", "coco", "val", str(var / "coco-val"), "{}")
            rows.append((database, "coco (ours)", "val", ours))
            ls_out = var / "ls-val"
            run_child(env, "export", "label_studio", "val", str(ls_out), "{}")
            theirs = run_child(
                env,
                "lsconvert",
                str(ls_out / "tasks.json"),
                str(ls_out / "label_config.xml"),
                str(var / "ls-coco"),
            )
            rows.append((database, "label-studio-sdk BRUSH_TO_COCO", "val", theirs))
            print(f"[{database}] coco ours {ours} vs label-studio-sdk {theirs}", flush=True)
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--masks", type=int, default=50)
    parser.add_argument("--formats", default="sa1b,coco,label_studio,png")
    parser.add_argument("--postgres", metavar="ADMIN_URL", help="also on a fresh database of this server")
    args = parser.parse_args()
    if args.images < 1200:
        parser.error("--images must be at least 1200 (200 val + 1,000 train)")
    formats = args.formats.split(",")
    rows = bench("sqlite", None, args.images, args.masks, formats)
    if args.postgres:
        with postgres_database(args.postgres) as url:
            rows += bench("postgresql", url, args.images, args.masks, formats)
    print("\n| database | what | images | masks | seconds | images/s | masks/s | peak RSS MB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for database, what, split, r in rows:
        rate = f"{r['images'] / r['seconds']:.0f} | {r['masks'] / r['seconds']:.0f}"
        print(f"| {database} | {what} ({split}) | {r['images']} | {r['masks']} | {r['seconds']:.2f} | "
              f"{rate} | {r['peak_rss_mb']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
