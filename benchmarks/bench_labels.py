"""Label suggestions: accuracy of the label head against the two baselines, and its cost per click.

Data with known classes: a synthetic set (four classes differing in colour, texture and outline, on
clutter; features from pixels and from a SAM-family embedding of the same images), and the COCO
samples in ../shared/data (skipped when absent) with their categories, split by image. Baselines:
always the most frequent training label, and the last label used on the previous mask (what the page
pre-selects without suggestions). Accuracies are on held-out masks.

    python benchmarks/bench_labels.py              # synthetic + COCO, ~1 minute
    python benchmarks/bench_labels.py --quick      # smaller synthetic set
    python benchmarks/bench_labels.py --platform   # + clicks through Django with and without a head

The last line is for scripts: ``labels top1=.. top3=.. baseline_frequent=.. baseline_last=..``
(the COCO figures when ../shared is present, else the synthetic pixel features).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.labels import classic_features, embedding_features, evaluate_label_head, train_label_head  # noqa: E402
from engine.predictor import Predictor  # noqa: E402
from engine.sam import build_sam  # noqa: E402
from tests.label_data import NAMES, synthetic_scene_masks  # noqa: E402
from tests.tiny_models import TINY_CONFIG  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def baselines(train_labels: list[int], test_labels: list[int]) -> tuple[float, float]:
    """(most frequent training label, previous mask's label) accuracy on the test sequence."""
    frequent = Counter(train_labels).most_common(1)[0][0]
    freq = float(np.mean([label == frequent for label in test_labels]))
    last = [train_labels[-1], *test_labels[:-1]]
    return freq, float(np.mean([a == b for a, b in zip(last, test_labels)]))


def row(name: str, x_train, y_train, x_test, y_test, names, kind: str, min_per_label: int) -> dict:
    start = time.perf_counter()
    head = train_label_head(np.stack(x_train), y_train, names, kind=kind, min_per_label=min_per_label)
    seconds = time.perf_counter() - start
    metrics = evaluate_label_head(head, np.stack(x_test), y_test)
    freq, last = baselines(y_train, y_test)
    result = {
        "set": name,
        "train": len(y_train),
        "test": len(y_test),
        "labels": len(head.label_ids),
        "top1": metrics["top1"],
        "top3": metrics["top3"],
        "baseline_frequent": round(freq, 4),
        "baseline_last": round(last, 4),
        "train_s": round(seconds, 3),
    }
    print(
        f"{name:<28} train {len(y_train):>5}  test {len(y_test):>5}  labels {result['labels']:>3}  "
        f"top1 {metrics['top1']:.3f}  top3 {metrics['top3']:.3f}  frequent {freq:.3f}  last {last:.3f}  "
        f"fit {seconds:.2f} s"
    )
    return result


def embeddings_for(images: list[np.ndarray], predictor: Predictor) -> dict[int, tuple[np.ndarray, tuple]]:
    cache = {}
    for image in images:
        if id(image) not in cache:
            predictor.set_image(image)
            cache[id(image)] = (predictor.get_image_embedding()[0].numpy(), predictor.input_size)
    return cache


def synthetic(n_train: int, n_test: int, predictor: Predictor) -> list[dict]:
    train = synthetic_scene_masks(n_images=n_train, seed=11)
    test = synthetic_scene_masks(n_images=n_test, seed=12)
    rows = []
    y_train, y_test = [s[2] for s in train], [s[2] for s in test]
    rows.append(
        row(
            "synthetic, pixel features",
            [classic_features(i, m) for i, m, _ in train],
            y_train,
            [classic_features(i, m) for i, m, _ in test],
            y_test,
            NAMES,
            "classic",
            5,
        )
    )
    cache = embeddings_for([s[0] for s in train + test], predictor)
    size = predictor.model.image_encoder.img_size

    def features(samples):
        return [embedding_features(cache[id(i)][0], m, cache[id(i)][1], size) for i, m, _ in samples]

    rows.append(
        row(
            "synthetic, embedding (rand)",
            features(train),
            y_train,
            features(test),
            y_test,
            NAMES,
            "embedding",
            5,
        )
    )
    return rows


def coco_samples() -> list[tuple[str, np.ndarray, np.ndarray, int]] | None:
    """(image name, image, mask, category) for every non-crowd COCO-tiny annotation."""
    from pycocotools import mask as mask_utils

    folder = SHARED / "coco-tiny" / "small_coco"
    annotations = folder / "instances_train2017_small.json"
    if not annotations.exists():
        return None
    data = json.loads(annotations.read_text())
    images = {i["id"]: i for i in data["images"]}
    pixels: dict[int, np.ndarray] = {}
    samples = []
    for ann in data["annotations"]:
        if ann.get("iscrowd"):
            continue
        info = images[ann["image_id"]]
        if info["id"] not in pixels:
            pixels[info["id"]] = np.asarray(
                Image.open(folder / "train_2017_small" / info["file_name"]).convert("RGB")
            )
        h, w = info["height"], info["width"]
        segmentation = ann["segmentation"]
        rles = (
            mask_utils.frPyObjects(segmentation, h, w) if isinstance(segmentation, list) else [segmentation]
        )
        mask = mask_utils.decode(mask_utils.merge(rles) if len(rles) > 1 else rles[0]).astype(bool)
        if mask.sum() >= 16:
            samples.append((info["file_name"], pixels[info["id"]], mask, int(ann["category_id"])))
    return samples, {c["id"]: c["name"] for c in data["categories"]}


def coco(folds: int) -> dict | None:
    loaded = coco_samples()
    if loaded is None:
        print("COCO: skipped (../shared/data/coco-tiny is absent)")
        return None
    samples, names = loaded
    image_names = sorted({s[0] for s in samples})
    features = [classic_features(img, m) for _, img, m, _ in samples]
    totals = {"top1": [], "top3": [], "frequent": [], "last": [], "n": 0}
    for fold in range(folds):
        held = set(image_names[fold::folds])
        train = [i for i, s in enumerate(samples) if s[0] not in held]
        test = [i for i, s in enumerate(samples) if s[0] in held]
        y_train, y_test = [samples[i][3] for i in train], [samples[i][3] for i in test]
        head = train_label_head(
            np.stack([features[i] for i in train]), y_train, names, "classic", min_per_label=2
        )
        metrics = evaluate_label_head(head, np.stack([features[i] for i in test]), y_test)
        # Masks of a label the head never saw count as misses (as they would in the page).
        n = len(test)
        totals["top1"].append(metrics["top1"] * metrics["n"] / n)
        totals["top3"].append(metrics["top3"] * metrics["n"] / n)
        freq, last = baselines(y_train, y_test)
        totals["frequent"].append(freq)
        totals["last"].append(last)
        totals["n"] += n
    result = {
        "set": f"COCO-tiny, pixel features, {folds}-fold by image",
        "test": totals["n"],
        "labels": len({s[3] for s in samples}),
        **{k: round(statistics.fmean(v), 4) for k, v in totals.items() if k != "n"},
    }
    print(
        f"{result['set']:<28} masks {len(samples)}  labels {result['labels']}  top1 {result['top1']:.3f}  "
        f"top3 {result['top3']:.3f}  frequent {result['frequent']:.3f}  last {result['last']:.3f}"
    )
    return result


def click_cost(predictor: Predictor, repeats: int) -> None:
    """p50 of a decoder call alone and with the suggestion (features + head) added, on a 1024-px
    frame with a vit_b-sized embedding (256 x 64 x 64), which is what a real click pays."""
    rng = np.random.default_rng(0)
    embedding = rng.normal(size=(256, 64, 64)).astype(np.float32)
    mask = np.zeros((768, 1024), bool)
    mask[200:500, 300:700] = True
    head_features = rng.normal(size=(40, 256 * 2 + 7)).astype(np.float32)
    head = train_label_head(head_features, [1 + i % 4 for i in range(40)], NAMES, min_per_label=2)
    image = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    predictor.set_image(image)
    point = np.array([[64.0, 48.0]])

    def decode():
        predictor.predict(point_coords=point, point_labels=np.array([1]), multimask_output=True)

    def suggest():
        head.suggest(embedding_features(embedding, mask, (768, 1024)), current_labels=NAMES)

    for fn in (decode, suggest):
        fn()
    plain, added = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        decode()
        middle = time.perf_counter()
        suggest()
        end = time.perf_counter()
        plain.append(middle - start)
        added.append(end - middle)
    print(
        f"click cost: suggestion adds p50 {statistics.median(added) * 1000:.2f} ms "
        f"(p90 {np.percentile(added, 90) * 1000:.2f} ms) per click; tiny-model decode alone "
        f"p50 {statistics.median(plain) * 1000:.2f} ms (the platform's click budget is 50 ms p50)"
    )


def platform_clicks(clicks: int) -> None:
    """p50 of ``POST /api/images/{id}/predict`` through Django's WSGI handler (bench_click_overhead's
    installation: tiny SAM, SQLite), batches with and without an active label head alternating."""
    import tempfile

    import bench_click_overhead as overhead

    with tempfile.TemporaryDirectory(prefix="maskmill-labels-") as folder:
        overhead.configure(Path(folder), None, None)
        import django

        django.setup()
        from annotator.images.models import Image
        from annotator.projects.services import create_label
        from annotator.suggestions.models import HeadStatus, LabelHeadVersion
        from annotator.suggestions.services import forget_heads

        image_id, headers = overhead.install("token")
        image = Image.objects.select_related("project").get(pk=image_id)
        labels = {create_label(image.project, name=n).pk: n for n in NAMES.values()}
        channels = 64  # SMALL_CONFIG's prompt_embed_dim: pooled inside + ring + shape block
        rng = np.random.default_rng(0)
        head = train_label_head(
            rng.normal(size=(80, 2 * channels + 7)).astype(np.float32),
            [k for k in labels for _ in range(20)], labels, min_per_label=2,
        )  # fmt: skip
        from annotator.training.services import model_version_for

        row = LabelHeadVersion.objects.create(
            project=image.project, model_version=model_version_for(image.project), kind="embedding",
            data=head.to_bytes(), status=HeadStatus.RETIRED,
        )  # fmt: skip
        client = overhead.Wsgi(headers)
        url = f"/api/images/{image_id}/predict"
        while client.post(f"/api/images/{image_id}/prepare")[1].get("state") != "ready":
            time.sleep(0.1)
        times: dict[bool, list[float]] = {False: [], True: []}
        suggest_ms: list[float] = []
        for batch in range(8):
            with_head = batch % 2 == 1
            LabelHeadVersion.objects.filter(pk=row.pk).update(
                status=HeadStatus.ACTIVE if with_head else HeadStatus.RETIRED
            )
            forget_heads()
            client.post(url, {"points": [[320, 240]], "labels": [1]})  # re-reads the head
            for n in range(clicks // 8):
                body = {"points": [[300 + n % 40, 230]], "labels": [1]}
                started = time.perf_counter()
                status, answer = client.post(url, body)
                times[with_head].append((time.perf_counter() - started) * 1000)
                assert status == 200 and (("suggestions" in answer) == with_head), answer.keys()
                if with_head:
                    suggest_ms.append(answer["timing_ms"]["suggest"])
        print(
            f"platform clicks (tiny SAM, 640x480, 3 masks each, {clicks} clicks alternating): request p50 "
            f"{statistics.median(times[False]):.2f} ms without suggestions, "
            f"{statistics.median(times[True]):.2f} ms with "
            f"(suggest step p50 {statistics.median(suggest_ms):.2f} ms)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--platform", action="store_true", help="also time clicks through Django")
    parser.add_argument("--clicks", type=int, default=160)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    predictor = Predictor(build_sam("custom", config=TINY_CONFIG).eval())
    n_train, n_test = (16, 8) if args.quick else (60, 30)
    rows = synthetic(n_train, n_test, predictor)
    coco_row = coco(args.folds)
    click_cost(predictor, repeats=50 if args.quick else 200)
    if args.platform:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        platform_clicks(args.clicks)
    if coco_row is not None:
        final = coco_row["top1"], coco_row["top3"], coco_row["frequent"], coco_row["last"]
    else:
        first = rows[0]
        final = first["top1"], first["top3"], first["baseline_frequent"], first["baseline_last"]
    print("labels top1={:.4f} top3={:.4f} baseline_frequent={:.4f} baseline_last={:.4f}".format(*final))


if __name__ == "__main__":
    main()
