"""Throughput of the fully automatic stage: a GenerationRun through real ``celery worker``
processes on PostgreSQL and a private Redis, with 1 and 2 worker processes, plus where an image's
time goes (phases, measured in this process on the same model) and how fast masks go into
PostgreSQL (batched ``bulk_create`` against ``COPY``).

    MASKMILL_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \\
        python benchmarks/bench_pipeline.py [--images 50] [--model small|vit_b] [--points 8]
            [--precision fp32,int8] [--size 256x192] [--phase-images 5]

Random weights (thresholds lowered so masks survive), synthetic images. ``--precision`` runs the
whole measurement once per encoder precision (MASKMILL_ENCODER_PRECISION in the workers).
The vit_b run: ``--model vit_b --images 10 --size 1024x768 --points 16 --precision fp32,int8``.
Figures only; no assertion on speed anywhere.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.pipeline_support import PipelineServices, shapes_png  # noqa: E402

SMALL = {
    "image_size": 256, "patch_size": 16, "encoder_embed_dim": 64, "encoder_depth": 4, "encoder_num_heads": 4,
    "encoder_global_attn_indexes": [1, 3], "encoder_window_size": 4, "prompt_embed_dim": 64,
    "decoder_mlp_dim": 128, "decoder_num_heads": 4, "iou_head_hidden_dim": 64,
}  # fmt: skip


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--model", choices=["small", "vit_b"], default="small")
    parser.add_argument("--points", type=int, default=8, help="points_per_side of the grid")
    parser.add_argument("--workers", default="1,2", help="worker process counts to run")
    parser.add_argument("--masks", type=int, default=5000, help="masks for the PostgreSQL write figure")
    parser.add_argument("--precision", default="fp32", help="encoder precisions to run (fp32, int8, bf16)")
    parser.add_argument("--size", default="256x192", help="image size WxH")
    parser.add_argument("--phase-images", type=int, default=5, help="images timed in-process for the split")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    admin_url = os.environ.get("MASKMILL_BENCH_DATABASE_URL") or os.environ.get("MASKMILL_TEST_DATABASE_URL")
    if not admin_url:
        sys.exit("set MASKMILL_TEST_DATABASE_URL (a PostgreSQL server this script may create a database on)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    cores = os.cpu_count() or 1
    services = PipelineServices(
        tmp, admin_url, env={"MASKMILL_MASK_GENERATOR": "", "MASKMILL_TEST_GENERATE_DELAY": "0"}
    )
    services.create_database()
    try:
        services.start_redis()
        os.environ.update({k: v for k, v in services.env().items() if k != "PYTHONPATH"})
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", "--noinput", verbosity=0)
        checkpoint, config, family = make_checkpoint(tmp, args.model)
        params = {
            "points_per_side": args.points, "points_per_batch": 64, "pred_iou_thresh": 0.0,
            "stability_score_thresh": 0.0, "min_mask_region_area": 0,
        }  # fmt: skip
        grid = f"{args.points}x{args.points}"
        width, height = (int(v) for v in args.size.lower().split("x"))
        print(f"model {args.model} ({family}), {args.images} images {width}x{height}, grid {grid}, "
              f"{cores} cores, random weights, thresholds 0")  # fmt: skip
        summary = []
        for precision in args.precision.split(","):
            print(f"\n=== encoder precision {precision} ===")
            services.extra_env["MASKMILL_ENCODER_PRECISION"] = precision
            phases(checkpoint, config, family, params, precision, (width, height), args.phase_images)
            for workers in [int(n) for n in args.workers.split(",")]:
                summary.append(
                    (precision, workers,
                     throughput(services, workers, cores, args.images, checkpoint, config, family, params,
                                (width, height), precision))
                )  # fmt: skip
        print("\nsummary (images/hour):")
        for precision, workers, per_hour in summary:
            print(f"  {precision:<5} {workers} worker(s): {per_hour:8.0f}")
        write_speed(args.masks)
    finally:
        services.stop()
        from django.db import connections

        connections.close_all()
        services.drop_database()


def make_checkpoint(tmp: Path, model: str) -> tuple[str, dict, str]:
    import torch

    from engine.sam import build_sam

    torch.manual_seed(0)
    config = SMALL if model == "small" else {}
    family = "custom" if model == "small" else "vit_b"
    path = tmp / f"{model}.pt"
    torch.save(build_sam(family, config=config or None).state_dict(), path)
    return str(path), config, family


def new_project(
    name: str, images: int, checkpoint: str, config: dict, family: str, params: dict, size: tuple[int, int]
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from annotator.images.services import ingest_files
    from annotator.projects.services import create_project
    from annotator.training.models import ModelVersion

    project = create_project(name=name, creator=None)
    project.active_model_version, _ = ModelVersion.objects.get_or_create(
        family=family, checkpoint=checkpoint, config=config, defaults={"name": name}
    )
    project.settings["generation"] = {"fully_automatic": params}
    project.save()
    uploads = [SimpleUploadedFile(f"{seed}.png", shapes_png(seed, *size)) for seed in range(images)]
    ingest_files(project, uploads, None)
    return project


def phases(
    checkpoint: str,
    config: dict,
    family: str,
    params: dict,
    precision: str,
    size: tuple[int, int],
    count: int,
) -> None:
    """Where one image's time goes, on this process's copy of the model (median of ``count`` images)."""
    from django.conf import settings
    from django.db import transaction

    from annotator.stages import generation, services
    from annotator.stages import items as item_work
    from annotator.stages.models import GenerationItem
    from annotator.training.services import forget_loaded_models

    settings.MASKMILL_ENCODER_PRECISION = precision
    forget_loaded_models()
    generation.forget_generators()
    project = new_project(f"phases-{precision}", count + 1, checkpoint, config, family, params, size)
    run = services.start_run(project, "auto", enqueue=False)
    items = list(GenerationItem.objects.filter(run=run).order_by("id"))
    split: dict[str, list[float]] = {}
    for index, item in enumerate(items):
        claim = item_work.claim_item(item.pk, "bench")
        start = time.perf_counter()
        pixels = generation.read_item_image(claim.image)
        read = time.perf_counter() - start
        generator = generation.generator_for(run.model_version, run.parameters["generator"])
        start = time.perf_counter()
        records = generator.generate(pixels)
        generate = time.perf_counter() - start
        start = time.perf_counter()
        fields = [generation.record_fields(r) for r in records]
        with transaction.atomic():
            item_work.finish_item(claim, fields, read + generate)
        write = time.perf_counter() - start
        if index == 0:
            continue  # the first image pays for loading the model
        for name, value in {"read": read, **dict(generator.timings), "store": write}.items():
            split.setdefault(name, []).append(value)
    total = sum(statistics.median(v) for v in split.values())
    print(f"\nphase split per image (median of {count}, one process, after warm-up):")
    for name, values in split.items():
        median = statistics.median(values)
        print(f"  {name:<10} {median * 1000:9.1f} ms  {100 * median / total:5.1f} %")


def throughput(
    services, workers: int, cores: int, images: int, checkpoint, config, family, params, size, precision
) -> float:
    from annotator.stages import selectors
    from annotator.stages import services as stage_services
    from annotator.stages.models import GenerationRun

    name = f"throughput-{precision}-{workers}"
    project = new_project(name, images, checkpoint, config, family, params, size)
    threads = max(cores // workers, 1)
    services.extra_env["OMP_NUM_THREADS"] = str(threads)
    names = [f"bench{workers}-{i}" for i in range(workers)]
    for name in names:
        services.start_worker(name)
    wait_ready(services, names)
    run = stage_services.start_run(project, "auto")
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        run = GenerationRun.objects.get(pk=run.pk)
        if run.status not in ("pending", "running"):
            break
        time.sleep(0.5)
    for name in names:
        services.kill_worker(name)
    progress = selectors.run_progress(run)
    seconds = progress["elapsed_seconds"] or float("nan")
    print(
        f"\n{workers} worker process(es) x {threads} torch thread(s): {progress['done']} images "
        f"({progress['failed']} failed) in {seconds:.1f} s = {progress['images_per_hour']:.0f} images/hour, "
        f"{progress['masks']} masks ({progress['masks'] / seconds:.1f} masks/s end to end)"
    )
    return float(progress["images_per_hour"] or 0.0)


def wait_ready(services, names: list[str], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = [(services.tmp / f"worker-{name}.log").read_text(errors="replace") for name in names]
        if all(" ready." in log for log in logs):
            return
        time.sleep(0.5)
    raise RuntimeError("workers did not start")


def write_speed(count: int) -> None:
    """Masks per second into PostgreSQL: batched bulk_create against COPY, same rows."""
    from django.db import transaction

    from annotator.images.models import Image
    from annotator.masks.models import Mask
    from annotator.stages import services
    from engine.masks import encode_rle
    from tests.integration.pipeline_support import shapes_image

    image = Image.objects.order_by("id").first()
    rle = encode_rle(shapes_image(0, image.width, image.height)[:, :, 0] > 100)
    values = {
        "segmentation": rle, "bbox": [1.0, 2.0, 30.0, 40.0], "area": 1200, "predicted_iou": 0.9,
        "stability_score": 0.95, "point_coords": [[10.0, 12.0]],
        "crop_box": [0, 0, image.width, image.height],
    }  # fmt: skip
    print(f"\nmasks into PostgreSQL ({count} rows of one {image.width}x{image.height} RLE, one transaction):")
    for label, write in (("bulk_create x1000", lambda m: Mask.objects.bulk_create(m, batch_size=1000)),
                         ("COPY", services.copy_masks)):  # fmt: skip
        rows = [
            Mask(project_id=image.project_id, image_id=image.pk, source="auto", status="accepted", **values)
            for _ in range(count)
        ]
        start = time.perf_counter()
        with transaction.atomic():
            write(rows)
        seconds = time.perf_counter() - start
        print(f"  {label:<18} {count / seconds:9.0f} masks/s")
    Mask.objects.filter(image=image, source="auto", generation_item=None).delete()


if __name__ == "__main__":
    main()
