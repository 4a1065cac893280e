"""fp16 embedding storage: exact format, size, and decoding agreement with fp32."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from engine.embeddings import embedding_nbytes, load_embedding, save_embedding
from engine.predictor import Predictor
from engine.sam import build_sam
from tests.engine.sam_cases import mask_iou, one_torch_thread, prompt_cases, random_image
from tests.reference_models import SMALL_CONFIG, official_sam

_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


def test_round_trip_is_fp16_on_disk_and_float32_back(tmp_path):
    embedding = torch.randn(1, 256, 64, 64)
    path = tmp_path / "e.npy"
    save_embedding(path, embedding)
    on_disk = np.load(path)
    assert on_disk.dtype == np.float16 and on_disk.shape == (1, 256, 64, 64)
    # 256×64×64 fp16 = 2 MiB, plus the 128-byte .npy header.
    assert path.stat().st_size == embedding_nbytes() == 2 * 1024 * 1024 + 128
    loaded = load_embedding(path)
    assert loaded.dtype == torch.float32 and loaded.shape == (1, 256, 64, 64)
    assert torch.allclose(loaded, embedding, rtol=1e-3, atol=1e-4)
    buffer = io.BytesIO()
    save_embedding(buffer, embedding[0])  # CxHxW is stored as 1xCxHxW
    buffer.seek(0)
    assert torch.equal(load_embedding(buffer), loaded)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (torch.zeros(2, 3), "shape"),
        (torch.zeros(2, 3, 4, 4), "shape"),
        (torch.full((1, 2, 2, 2), float("nan")), "NaN"),
        (torch.full((1, 2, 2, 2), 1e6), "fp16 range"),
        (np.zeros((1, 2, 2, 2), np.int32), "floating point"),
    ],
)
def test_save_rejects_what_cannot_be_stored(tmp_path, value, message):
    with pytest.raises(ValueError, match=message):
        save_embedding(tmp_path / "e.npy", value)


def test_load_rejects_non_embeddings(tmp_path):
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="cannot read embedding"):
        load_embedding(tmp_path / "junk.npy")
    np.save(tmp_path / "ints.npy", np.zeros((1, 2, 2, 2), np.int64))
    with pytest.raises(ValueError, match="not an embedding"):
        load_embedding(tmp_path / "ints.npy")


def test_decoding_from_fp16_agrees_with_fp32(tmp_path):
    """Every mask of the equivalence prompt set (plus a mask-input round) has IoU ≥ 0.99."""
    model = build_sam("custom", config=SMALL_CONFIG)
    model.load_state_dict(official_sam(SMALL_CONFIG, seed=6).state_dict())
    ious = []
    for seed, (h, w) in enumerate([(300, 460), (410, 270), (37, 50)]):
        fp32 = Predictor(model)
        fp32.set_image(random_image(h, w, seed=seed))
        save_embedding(tmp_path / "e.npy", fp32.get_image_embedding())
        fp16 = Predictor(model)
        fp16.set_embedding(load_embedding(tmp_path / "e.npy"), (h, w))
        for _, kwargs in prompt_cases(h, w):
            for multimask in (True, False):
                a = fp32.predict(**kwargs, multimask_output=multimask)
                b = fp16.predict(**kwargs, multimask_output=multimask)
                ious.extend(mask_iou(x, y) for x, y in zip(a[0], b[0]))
        previous = a[2][:1]
        a = fp32.predict(**prompt_cases(h, w)[1][1], mask_input=previous)
        b = fp16.predict(**prompt_cases(h, w)[1][1], mask_input=previous)
        ious.extend(mask_iou(x, y) for x, y in zip(a[0], b[0]))
    assert min(ious) >= 0.99, f"worst mask IoU {min(ious):.4f}"
