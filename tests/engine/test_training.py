"""engine.training on tiny random models: the recipe learns, runs repeat with a seed, checkpoints
load where the issue says they must, and bad input stops with a reason."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from engine.embeddings import save_embedding
from engine.sam import CheckpointError, build_sam
from engine.training import (
    MIN_SAMPLES,
    TooFewSamplesError,
    TrainConfig,
    TrainingError,
    TrainingSample,
    evaluate,
    save_checkpoint,
    train,
)
from tests.engine.sam_cases import one_torch_thread
from tests.tiny_models import TINY_CONFIG

_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


def _samples(count: int = 8, seed: int = 0) -> list[TrainingSample]:
    """Red rectangles on noise: a task a tiny model learns in a few dozen steps."""
    rng = np.random.default_rng(seed)
    samples = []
    for index in range(count):
        image = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
        mask = np.zeros((96, 128), bool)
        y, x = rng.integers(8, 56, 2)
        mask[y : y + 32, x : x + 40] = True
        image[mask] = (220, 30, 30)
        samples.append(TrainingSample(mask=mask, image=image, name=f"rect{index}"))
    return samples


def _model(seed: int = 0):
    torch.manual_seed(seed)
    return build_sam("custom", config=TINY_CONFIG)


def test_decoder_mode_is_deterministic_and_trains_only_the_decoder():
    config = TrainConfig(steps=4, batch=4, lr=1e-3, warmup=1, seed=3, point_rounds=3, mask_rounds=2)
    first, second = _model(), _model()
    encoder_before = {k: v.clone() for k, v in first.image_encoder.state_dict().items()}
    result_a = train(first, _samples(), config)
    result_b = train(second, _samples(), config)
    assert result_a.completed and result_a.steps_done == 4
    assert result_a.losses == result_b.losses
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    for key, value in first.image_encoder.state_dict().items():
        assert torch.equal(value, encoder_before[key]), key
    assert not torch.equal(first.mask_decoder.iou_token.weight, _model().mask_decoder.iou_token.weight)
    other = train(_model(), _samples(), TrainConfig(**{**config.as_dict(), "seed": 4}))
    assert other.losses != result_a.losses


def test_full_mode_overfits_a_tiny_set():
    """Random weights learn the red rectangles: loss falls and the click metrics rise (1:1 loss
    weights, the from-scratch setting; 20:1 collapses a random model to empty masks)."""
    model, samples = _model(), _samples()
    before = evaluate(model, samples, clicks=5)
    config = TrainConfig(
        mode="full", steps=40, batch=4, lr=3e-3, encoder_lr=3e-4, warmup=4,
        focal_weight=1.0, focal_alpha=-1.0, point_rounds=2, mask_rounds=1,
    )  # fmt: skip
    result = train(model, samples, config)
    assert result.completed and result.masks_per_second > 0
    first, last = np.mean(result.losses[:5]), np.mean(result.losses[-5:])
    assert last < 0.6 * first, (first, last)
    after = evaluate(model, samples, clicks=5)
    assert after["mIoU@1"] > before["mIoU@1"] + 0.3, (before, after)


def test_stored_embeddings_are_used_and_unreadable_ones_recomputed(tmp_path):
    model = _model()
    samples = _samples()
    stored = []
    for index, sample in enumerate(samples):
        path = tmp_path / f"{index}.npy"
        if index == 0:
            path.write_bytes(b"not an embedding")
            stored.append(TrainingSample(mask=sample.mask, image=sample.image, embedding=path))
        else:
            save_embedding(path, torch.randn(1, 32, 8, 8))
            stored.append(TrainingSample(mask=sample.mask, embedding=path, name=f"emb{index}"))
    stored.append(TrainingSample(mask=samples[0].mask, embedding=tmp_path / "missing.npy", name="gone"))
    result = train(model, stored, TrainConfig(steps=2, batch=4, min_samples=4))
    assert result.samples == 8
    assert any("recomputed" in reason for reason in result.skipped)
    assert any(reason.startswith("gone:") and "no image" in reason for reason in result.skipped)


def test_too_few_samples_says_how_many_are_needed():
    with pytest.raises(TooFewSamplesError) as caught:
        train(_model(), _samples(3), TrainConfig(steps=1))
    assert caught.value.got == 3 and caught.value.needed == MIN_SAMPLES
    assert f"at least {MIN_SAMPLES}" in str(caught.value) and f"{MIN_SAMPLES - 3} more" in str(caught.value)
    empty = [TrainingSample(mask=np.zeros((20, 20), bool), image=np.zeros((20, 20, 3), np.uint8))] * 9
    with pytest.raises(TrainingError, match="empty mask"):
        train(_model(), empty, TrainConfig(steps=1))


def test_nan_loss_stops_with_the_reason_and_keeps_the_weights():
    model = _model()
    with torch.no_grad():
        model.mask_decoder.iou_token.weight.fill_(float("nan"))
    before = {k: v.clone() for k, v in model.mask_decoder.state_dict().items()}
    result = train(model, _samples(), TrainConfig(steps=5, batch=4))
    assert not result.completed and result.steps_done == 0
    assert "nan" in result.stopped_reason.lower() and "step 1" in result.stopped_reason
    for key, value in model.mask_decoder.state_dict().items():
        assert torch.equal(value, before[key]) or (value.isnan() == before[key].isnan()).all(), key
    with pytest.raises(TrainingError, match="non-finite"):
        save_checkpoint(model, "never-written.pth")


def test_bad_config_is_refused_by_name():
    with pytest.raises(TrainingError, match="mode"):
        TrainConfig(mode="encoder")
    with pytest.raises(TrainingError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(TrainingError, match="unknown training options"):
        TrainConfig.from_dict({"stepz": 3})


def test_checkpoint_round_trip_and_wrong_family(tmp_path):
    model = _model()
    train(model, _samples(), TrainConfig(steps=2, batch=4))
    path = save_checkpoint(model, tmp_path / "new.pth")
    loaded = build_sam("custom", config=TINY_CONFIG, checkpoint=path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    with pytest.raises(CheckpointError, match="does not fit vit_b"):
        build_sam("vit_b", checkpoint=path)


def test_evaluate_reports_click_metrics_from_images_and_embeddings():
    model = _model()
    samples = _samples(4)
    from_images = evaluate(model, samples, clicks=5)
    assert set(from_images) >= {"mIoU@1", "mIoU@3", "mIoU@5", "NoC@85", "NoC@90", "instances"}
    assert from_images["instances"] == 4
    assert all(0 <= from_images[k] <= 1 for k in ("mIoU@1", "mIoU@5"))
    assert 1 <= from_images["NoC@85"] <= 5 and not math.isnan(from_images["NoC@90"])


# vit_b's image size, prompt encoder and decoder with a small encoder: what segment_anything's
# registry builds for vit_b (its ``_build_sam``), at a size a test can afford.
VIT_B_SHAPED = {
    "encoder_embed_dim": 64,
    "encoder_depth": 2,
    "encoder_num_heads": 2,
    "encoder_global_attn_indexes": [1],
}


@pytest.mark.reference
def test_checkpoint_loads_through_segment_anythings_registry_path(tmp_path):
    from tests.reference import reference

    torch.manual_seed(0)
    model = build_sam("custom", config=VIT_B_SHAPED)
    embedding = torch.randn(1, 256, 64, 64).half()
    masks = _samples(MIN_SAMPLES)
    samples = [TrainingSample(mask=s.mask, embedding=embedding, image_key="one") for s in masks]
    result = train(model, samples, TrainConfig(steps=1, batch=1, point_rounds=1, mask_rounds=0, lr=1e-2))
    assert result.completed
    path = save_checkpoint(model, tmp_path / "vit_b_shaped.pth")
    build = reference("segment_anything.build_sam")
    official = build._build_sam(
        encoder_embed_dim=64,
        encoder_depth=2,
        encoder_num_heads=2,
        encoder_global_attn_indexes=[1],
        checkpoint=path,
    )
    theirs = official.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, theirs[key]), key
    assert set(theirs) == set(model.state_dict())


def test_cli_trains_evaluates_and_refuses_bad_input(tmp_path, capsys):
    import json

    from engine.training.__main__ import main
    from engine.training.synthetic import make_samples, write_click_folder

    data = write_click_folder(make_samples(5, seed=1), tmp_path / "train")
    val = write_click_folder(make_samples(2, seed=2), tmp_path / "val")
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY_CONFIG))
    out = tmp_path / "new.pth"
    common = ["--model-type", "custom", "--config", str(config), "--out", str(out)]
    status = main(
        [*common, "--data", str(data), "--val", str(val), "--steps", "2", "--batch", "2", "--clicks", "5"]
    )
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "base" in printed and "result" in printed and "mIoU@1" in printed and "NoC@85" in printed
    build_sam("custom", config=TINY_CONFIG, checkpoint=out)
    summary = json.loads(printed.strip().splitlines()[-1])
    assert summary["train"]["completed"] and set(summary["val"]) == {"base", "result"}

    assert main([*common, "--data", str(tmp_path)]) == 2
    assert "neither img/" in capsys.readouterr().err
    assert (
        main(["--model-type", "vit_b", "--checkpoint", str(out), "--data", str(data), "--out", "x.pth"]) == 2
    )
    assert (
        "CheckpointError" in type(CheckpointError("")).__name__
        and "does not fit vit_b" in capsys.readouterr().err
    )
    few = write_click_folder(make_samples(1, seed=3), tmp_path / "few")
    assert main([*common, "--data", str(few), "--steps", "1"]) == 2
    assert "more needed" in capsys.readouterr().err


def test_sa1b_shards_are_training_data(tmp_path):
    import io

    from PIL import Image

    from engine.masks import encode_rle
    from engine.sa1b import SA1BImage, make_record, write_shards
    from engine.training.data import load_samples
    from engine.training.synthetic import make_samples

    samples = make_samples(3, seed=4)
    by_image: dict[str, list] = {}
    for sample in samples:
        by_image.setdefault(sample.image_key, []).append(sample)
    items = []
    for image_id, group in enumerate(by_image.values(), start=1):
        buffer = io.BytesIO()
        Image.fromarray(group[0].image).save(buffer, format="JPEG", quality=95)
        height, width = group[0].mask.shape
        annotations = [
            {
                "segmentation": encode_rle(s.mask),
                "bbox": [0, 0, 1, 1],
                "area": int(s.mask.sum()),
                "predicted_iou": 1.0,
                "stability_score": 1.0,
                "point_coords": [[0, 0]],
                "crop_box": [0, 0, width, height],
            }
            for s in group
        ]
        items.append(
            SA1BImage(image_id, buffer.getvalue(), make_record(image_id, width, height, annotations))
        )
    write_shards(items, tmp_path / "shards", images_per_shard=2)
    loaded = load_samples(tmp_path / "shards")
    assert len(loaded) == len(samples)
    assert len({s.image_key for s in loaded}) == len(by_image)
    assert sum(int(s.mask.sum()) for s in loaded) == sum(int(s.mask.sum()) for s in samples)
    assert all(s.image.shape == (128, 128, 3) for s in loaded)
