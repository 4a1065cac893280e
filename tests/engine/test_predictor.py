"""Predictor: input validation, cached embeddings, precision modes and thread safety."""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from engine.predictor import Predictor
from engine.sam import build_sam, with_precision
from tests.engine.sam_cases import all_prompt_outputs, mean_mask_iou, one_torch_thread, random_image
from tests.reference_models import SMALL_CONFIG, official_sam

_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


@pytest.fixture(scope="module")
def model():
    ours = build_sam("custom", config=SMALL_CONFIG)
    ours.load_state_dict(official_sam(SMALL_CONFIG, seed=4).state_dict())
    return ours


@pytest.fixture(scope="module")
def ready(model):
    predictor = Predictor(model)
    predictor.set_image(random_image(120, 160, seed=1))
    return predictor


def test_contract_attributes(model):
    predictor = Predictor(model)
    assert predictor.is_fallback is False
    assert not predictor.is_image_set and predictor.features is None
    with pytest.raises(RuntimeError, match="set_image"):
        predictor.predict(point_coords=np.array([[1, 1]]), point_labels=np.array([1]))
    with pytest.raises(RuntimeError, match="set_image"):
        predictor.get_image_embedding()


def test_outputs_have_sam_shapes_and_types(ready):
    masks, scores, logits = ready.predict(np.array([[80, 60]]), np.array([1]))
    assert masks.shape == (3, 120, 160) and masks.dtype == bool
    assert scores.shape == (3,) and scores.dtype == np.float32
    assert logits.shape == (3, 64, 64)  # SMALL_CONFIG: 16×16 embedding → 64×64 low-res
    single, _, _ = ready.predict(np.array([[80, 60]]), np.array([1]), multimask_output=False)
    assert single.shape == (1, 120, 160)
    raw, _, _ = ready.predict(np.array([[80, 60]]), np.array([1]), return_logits=True)
    assert raw.dtype == np.float32 and np.array_equal(raw > 0, masks)
    assert ready.original_size == (120, 160) and ready.input_size == (192, 256)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"point_coords": np.array([[1.0, 2.0]])}, ValueError, "given together"),
        ({"point_coords": np.array([1.0, 2.0]), "point_labels": np.array([1])}, ValueError, "Nx2"),
        ({"point_coords": np.array([[1.0, 2.0]]), "point_labels": np.array([1, 0])}, ValueError, "shape"),
        ({"point_coords": np.array([[np.nan, 2.0]]), "point_labels": np.array([1])}, ValueError, "NaN"),
        (
            {"point_coords": np.array([[1.0, 2.0]]), "point_labels": np.array([2])},
            ValueError,
            "1 .foreground.",
        ),
        ({"point_coords": np.array([["a", "b"]]), "point_labels": np.array([1])}, ValueError, "numeric"),
        ({"point_coords": np.array([[500.0, 2.0]]), "point_labels": np.array([1])}, ValueError, "outside"),
        ({"box": np.array([1.0, 2.0, 3.0])}, ValueError, "XYXY box"),
        ({"box": np.array([50.0, 2.0, 10.0, 30.0])}, ValueError, "x0 <= x1"),
        ({"box": np.array([1.0, 2.0, np.inf, 30.0])}, ValueError, "infinite"),
        ({"mask_input": np.zeros((256, 256))}, ValueError, r"shape \(1, 64, 64\)"),
        ({"mask_input": np.full((1, 64, 64), np.nan)}, ValueError, "NaN"),
        ({"box": np.array([1.0, 2.0, 3.0, 4.0]), "multimask_output": "yes"}, TypeError, "bool"),
    ],
)
def test_bad_prompts_are_explained(ready, kwargs, error, message):
    with pytest.raises(error, match=message):
        ready.predict(**kwargs)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((10, 10), np.uint8), "HxWx3"),
        (np.zeros((10, 10, 4), np.uint8), "HxWx3"),
        (np.zeros((10, 10, 3), np.float32), "uint8"),
        (np.zeros((0, 10, 3), np.uint8), "empty"),
    ],
)
def test_bad_images_are_explained(model, image, message):
    with pytest.raises(ValueError, match=message):
        Predictor(model).set_image(image)


def test_bad_image_format_and_torch_image(model):
    predictor = Predictor(model)
    with pytest.raises(ValueError, match="image_format"):
        predictor.set_image(np.zeros((8, 8, 3), np.uint8), image_format="RGBA")
    with pytest.raises(ValueError, match="long side 256"):
        predictor.set_torch_image(torch.zeros(1, 3, 100, 200), (100, 200))
    with pytest.raises(TypeError, match="numpy"):
        predictor.set_image([[0, 0, 0]])


def test_set_embedding_decodes_like_set_image(model, ready):
    cached = Predictor(model)
    cached.set_embedding(ready.get_image_embedding().clone(), (120, 160), (192, 256))
    for ours, reference in zip(all_prompt_outputs(cached, 120, 160), all_prompt_outputs(ready, 120, 160)):
        for a, b in zip(ours, reference):
            np.testing.assert_array_equal(a, b)
    cached.set_embedding(ready.get_image_embedding().numpy()[0], (120, 160))  # CxHxW numpy, size derived
    assert cached.input_size == (192, 256)


def test_set_embedding_validation(model, ready):
    predictor = Predictor(model)
    embedding = ready.get_image_embedding()
    with pytest.raises(ValueError, match="must have shape"):
        predictor.set_embedding(torch.zeros(1, 256, 64, 64), (120, 160))
    with pytest.raises(ValueError, match="does not match original_size"):
        predictor.set_embedding(embedding, (120, 160), (256, 256))
    with pytest.raises(ValueError, match="NaN"):
        predictor.set_embedding(torch.full_like(embedding, float("nan")), (120, 160))
    with pytest.raises(ValueError, match="positive integers"):
        predictor.set_embedding(embedding, (0, 160))
    predictor.set_embedding(embedding, (120, 160))
    predictor.reset_image()
    assert not predictor.is_image_set and predictor.features is None


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_reduced_precision_agrees_with_fp32(model, precision):
    """Mean mask IoU ≥ 0.98 against fp32 over three images × the equivalence prompt set (a
    random-weight model is harsher than a trained one: its logits sit closer to the threshold)."""
    fast = with_precision(copy.deepcopy(model), precision)
    reference, candidate = Predictor(model), Predictor(fast)
    ious = []
    for seed, (h, w) in enumerate([(300, 400), (400, 300), (256, 256)]):
        image = random_image(h, w, seed=seed)
        reference.set_image(image)
        candidate.set_image(image)
        assert candidate.get_image_embedding().dtype == torch.float32
        ious.append(mean_mask_iou(all_prompt_outputs(candidate, h, w), all_prompt_outputs(reference, h, w)))
    assert np.mean(ious) >= 0.98, ious


def test_eight_threads_share_one_model(model):
    """Per-image state lives in each Predictor: concurrent decoding equals sequential decoding."""
    shapes = [(90 + 13 * i, 140 - 7 * i) for i in range(8)]
    images = [random_image(h, w, seed=10 + i) for i, (h, w) in enumerate(shapes)]

    def run(index: int) -> list[tuple]:
        predictor = Predictor(model)
        predictor.set_image(images[index])
        h, w = shapes[index]
        return all_prompt_outputs(predictor, h, w)

    sequential = [run(i) for i in range(8)]
    previous = torch.get_num_threads()
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(run, range(8)))
    assert torch.get_num_threads() == previous
    for seq, conc in zip(sequential, concurrent):
        for seq_out, conc_out in zip(seq, conc):
            for a, b in zip(seq_out, conc_out):
                np.testing.assert_array_equal(a, b)
