"""``python -m engine.automatic`` end to end on a tiny custom checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import torch

from engine.sa1b import iter_dataset
from tests.engine.test_automatic import scene, structured_
from tests.reference_models import SMALL_CONFIG, official_sam

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine.automatic", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


def test_without_checkpoint_it_says_it_needs_one(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), scene())
    result = run_cli(str(tmp_path / "a.png"), "--out", str(tmp_path / "out"))
    assert result.returncode != 0
    assert "needs a model checkpoint" in result.stderr and "--checkpoint" in result.stderr


def test_missing_input_is_reported(tmp_path):
    result = run_cli(str(tmp_path / "nothing-here"), "--out", str(tmp_path / "out"), "--checkpoint", "x.pth")
    assert result.returncode != 0 and "neither an image file nor a folder" in result.stderr


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    model = structured_(official_sam(SMALL_CONFIG, seed=0), sharpness=300, offset=0.4, iou_shift=0.6)
    torch.save(model.state_dict(), path)
    return path


@pytest.mark.parametrize("fmt", ["sa1b", "png"])
def test_end_to_end(tmp_path, checkpoint, fmt):
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "one.png"), scene(seed=0)[:, :, ::-1])
    cv2.imwrite(str(images / "two.jpg"), scene(120, 160, seed=1)[:, :, ::-1])
    out = tmp_path / "out"
    result = run_cli(
        str(images), "--out", str(out), "--format", fmt, "--model-type", "custom",
        "--config", json.dumps(SMALL_CONFIG), "--checkpoint", str(checkpoint), "--points-per-side", "4",
        "--pred-iou-thresh", "0", "--stability-score-thresh", "0", "--min-mask-region-area", "20",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "2 images" in result.stdout and "images/s" in result.stdout and "masks/image" in result.stdout
    if fmt == "sa1b":
        items = list(iter_dataset(out))
        assert [item.image_id for item in items] == [1, 2]
        assert [(i.record["image"]["height"], i.record["image"]["width"]) for i in items] == [
            (200, 300),
            (120, 160),
        ]
        assert all(item.record["annotations"] for item in items)
        assert items[0].image_bytes[:2] == b"\xff\xd8"  # JPEG
    else:
        for stem in ("one", "two"):
            pngs = sorted((out / stem).glob("*.png"))
            assert pngs and (out / stem / "metadata.csv").is_file()
            assert cv2.imread(str(pngs[0]), cv2.IMREAD_GRAYSCALE).max() == 255
