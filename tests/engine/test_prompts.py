"""One rule for prompts: the SAM predictor and the classic segmenter accept and refuse the same
prompts (engine.prompts), and the annotation API answers a refused one with the same reason."""

from __future__ import annotations

import numpy as np
import pytest

from engine.classic import ClassicPredictor
from engine.predictor import Predictor
from engine.prompts import PromptValueError, check_box, check_points
from engine.sam import build_sam
from tests.engine.sam_cases import one_torch_thread, random_image
from tests.reference_models import SMALL_CONFIG

_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)

HEIGHT, WIDTH = 120, 160


@pytest.fixture(scope="module")
def predictors():
    image = random_image(HEIGHT, WIDTH, seed=3)
    sam = Predictor(build_sam("custom", config=SMALL_CONFIG))
    sam.set_image(image)
    classic = ClassicPredictor()
    classic.set_image(image)
    return {"sam": sam, "classic": classic}


REFUSED = [
    ({"point_coords": np.array([[10.0, 10.0]]), "point_labels": np.array([-1])}, "point_labels"),
    ({"point_coords": np.array([[10.0, 10.0]]), "point_labels": np.array([2])}, "point_labels"),
    ({"point_coords": np.array([[WIDTH + 1.0, 10.0]]), "point_labels": np.array([1])}, "point_coords"),
    ({"box": np.array([20.0, 20.0, 10.0, 40.0])}, "box"),
    ({"box": np.array([10.0, 10.0, WIDTH + 5.0, 40.0])}, "box"),
    ({"box": np.array([WIDTH + 10.0, 10.0, WIDTH + 20.0, 40.0])}, "box"),
    ({}, "prompts"),
]


@pytest.mark.parametrize(("kwargs", "argument"), REFUSED)
def test_both_predictors_refuse_the_same_prompts_with_the_same_reason(predictors, kwargs, argument):
    reasons = []
    for predictor in predictors.values():
        with pytest.raises(PromptValueError) as refused:
            predictor.predict(**kwargs)
        assert refused.value.argument == argument
        reasons.append(str(refused.value))
    assert reasons[0] == reasons[1]


ACCEPTED = [
    {"box": np.array([40.0, 30.0, 40.0, 90.0])},  # a line: x0 == x1
    {"box": np.array([0.0, 0.0, WIDTH, HEIGHT])},  # the whole image, edges included
    {"point_coords": np.array([[WIDTH, HEIGHT]]), "point_labels": np.array([0])},  # the far corner
]


@pytest.mark.parametrize("kwargs", ACCEPTED)
def test_both_predictors_accept_the_same_edge_cases(predictors, kwargs):
    for predictor in predictors.values():
        masks, scores, low_res = predictor.predict(**kwargs, multimask_output=False)
        assert masks.shape == (1, HEIGHT, WIDTH) and scores.shape == (1,) and low_res.ndim == 3


def test_checks_return_what_the_predictors_use():
    coords, labels = check_points([[1, 2], [3, 4]], [1, 0], (HEIGHT, WIDTH))
    assert coords.dtype == np.float64 and coords.shape == (2, 2)
    assert labels.dtype == np.int64 and labels.tolist() == [1, 0]
    assert check_points(None, None, (HEIGHT, WIDTH)) == (None, None)
    assert check_box([[1, 2, 3, 4]], (HEIGHT, WIDTH)).tolist() == [1.0, 2.0, 3.0, 4.0]
    with pytest.raises(PromptValueError, match="given together"):
        check_points([[1, 2]], None, (HEIGHT, WIDTH))
