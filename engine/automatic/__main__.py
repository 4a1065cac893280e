"""``python -m engine.automatic IMAGES_OR_DIRS... --model-type vit_b --checkpoint PATH --out DIR``

Automatic masks for a set of images, like segment_anything's scripts/amg.py. Output formats:
``sa1b`` (SA-1B shards + manifest), ``coco_rle`` (one JSON list of records per image), ``png``
(one folder per image with a PNG per mask and metadata.csv).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

PNG_COLUMNS = [
    "id",
    "area",
    "bbox_x0",
    "bbox_y0",
    "bbox_w",
    "bbox_h",
    "point_input_x",
    "point_input_y",
    "predicted_iou",
    "stability_score",
    "crop_box_x0",
    "crop_box_y0",
    "crop_box_w",
    "crop_box_h",
]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m engine.automatic", description=__doc__.split("\n\n")[1])
    parser.add_argument("inputs", nargs="+", help="image files or folders of images")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--model-type", default="vit_b", help="vit_b | vit_l | vit_h | vit_t | custom")
    parser.add_argument("--checkpoint", help="model checkpoint (.pth); required")
    parser.add_argument("--config", help="JSON of sizes for --model-type custom")
    parser.add_argument("--format", choices=("sa1b", "coco_rle", "png"), default="coco_rle")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images-per-shard", type=int, default=1000, help="for --format sa1b")
    group = parser.add_argument_group("generator parameters (as SamAutomaticMaskGenerator)")
    group.add_argument("--points-per-side", type=int, default=32)
    group.add_argument("--points-per-batch", type=int, default=64)
    group.add_argument("--pred-iou-thresh", type=float, default=0.88)
    group.add_argument("--stability-score-thresh", type=float, default=0.95)
    group.add_argument("--stability-score-offset", type=float, default=1.0)
    group.add_argument("--box-nms-thresh", type=float, default=0.7)
    group.add_argument("--crop-n-layers", type=int, default=0)
    group.add_argument("--crop-nms-thresh", type=float, default=0.7)
    group.add_argument("--crop-overlap-ratio", type=float, default=512 / 1500)
    group.add_argument("--crop-n-points-downscale-factor", type=int, default=1)
    group.add_argument("--min-mask-region-area", type=int, default=0)
    return parser.parse_args(argv)


def find_images(inputs: list[str]) -> list[Path]:
    found: list[Path] = []
    for entry in inputs:
        path = Path(entry)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise SystemExit(f"error: {entry} is neither an image file nor a folder")
    if not found:
        raise SystemExit("error: no images found in " + ", ".join(inputs))
    return found


def load_model(args: argparse.Namespace):
    if not args.checkpoint:
        raise SystemExit(
            "error: automatic generation needs a model checkpoint: pass --checkpoint PATH "
            "(official SAM .pth files work as they are; see engine.checkpoint_download to download one)"
        )
    if not Path(args.checkpoint).is_file():
        raise SystemExit(f"error: checkpoint {args.checkpoint} does not exist")
    try:
        from engine.sam import build_sam
    except ImportError as exc:  # pragma: no cover - only before engine.sam lands
        raise SystemExit(f"error: engine.sam is not available ({exc})") from exc
    config = json.loads(args.config) if args.config else None
    return build_sam(args.model_type, checkpoint=args.checkpoint, config=config).to(args.device).eval()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    paths = find_images(args.inputs)
    model = load_model(args)

    from tqdm import tqdm

    from engine.automatic import MaskGenerator
    from engine.images import read_image

    generator = MaskGenerator(
        model,
        points_per_side=args.points_per_side,
        points_per_batch=args.points_per_batch,
        pred_iou_thresh=args.pred_iou_thresh,
        stability_score_thresh=args.stability_score_thresh,
        stability_score_offset=args.stability_score_offset,
        box_nms_thresh=args.box_nms_thresh,
        crop_n_layers=args.crop_n_layers,
        crop_nms_thresh=args.crop_nms_thresh,
        crop_overlap_ratio=args.crop_overlap_ratio,
        crop_n_points_downscale_factor=args.crop_n_points_downscale_factor,
        min_mask_region_area=args.min_mask_region_area,
        output_mode="coco_rle",
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    counts: list[int] = []

    def images():
        for path in paths:
            yield read_image(path)

    def results():
        """(index, path, records) per image, streamed: nothing is kept once it is written."""
        with tqdm(total=len(paths), unit="image", file=sys.stderr) as progress:
            for index, (path, records) in enumerate(zip(paths, generator.generate_batch(images()))):
                # Empty masks (possible with thresholds at 0) are no annotation; leave them out.
                records = [record for record in records if record["area"] > 0]
                counts.append(len(records))
                yield index, path, records
                progress.update(1)
                progress.set_postfix(masks=len(records))

    if args.format == "sa1b":
        from engine.sa1b import write_shards

        items = (sa1b_item(index + 1, path, records) for index, path, records in results())
        write_shards(items, out, images_per_shard=args.images_per_shard)
    else:
        for _, path, records in results():
            if args.format == "coco_rle":
                (out / f"{path.stem}.json").write_text(json.dumps(records))
            else:
                write_png(out / path.stem, records)
    done, total_masks = len(counts), sum(counts)
    elapsed = time.perf_counter() - started
    print(
        f"{done} images, {total_masks} masks in {elapsed:.1f} s: {done / elapsed:.3f} images/s, "
        f"{total_masks / max(done, 1):.1f} masks/image → {out}"
    )
    return 0


def write_png(folder: Path, records: list[dict]) -> None:
    from engine.masks import decode_rle

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, record in enumerate(records):
        cv2.imwrite(str(folder / f"{i}.png"), decode_rle(record["segmentation"]).astype(np.uint8) * 255)
        rows.append([i, record["area"], *record["bbox"], *record["point_coords"][0], record["predicted_iou"],
                     record["stability_score"], *record["crop_box"]])  # fmt: skip
    with open(folder / "metadata.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(PNG_COLUMNS)
        writer.writerows(rows)


def sa1b_item(image_id: int, path: Path, records: list[dict]):
    """An SA-1B entry: the image re-encoded as JPEG (SA-1B ships JPEGs) and its record. Image ids
    are the 1-based position in the sorted input list, so a rerun gives the same ids."""
    from engine.images import read_image
    from engine.sa1b import SA1BImage, make_record

    image = read_image(path)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=95)
    record = make_record(image_id, image.shape[1], image.shape[0], records)
    return SA1BImage(image_id, buffer.getvalue(), record)


if __name__ == "__main__":
    sys.exit(main())
