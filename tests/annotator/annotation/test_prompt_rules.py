"""The predict endpoint refuses a prompt for the reason the engine gives (engine.prompts), under the
body's field name."""

from __future__ import annotations

import numpy as np
import pytest
from rest_framework.test import APIClient

from engine.classic import ClassicPredictor
from engine.prompts import PromptValueError
from tests.annotator.annotation_fixtures import add_picture, disk_picture

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.mark.parametrize(
    ("body", "field", "kwargs"),
    [
        (
            {"points": [[10, 10]], "labels": [-1]},
            "labels",
            {"point_coords": [[10, 10]], "point_labels": [-1]},
        ),
        (
            {"points": [[170, 10]], "labels": [1]},
            "points",
            {"point_coords": [[170, 10]], "point_labels": [1]},
        ),
        ({"box": [30, 30, 20, 50]}, "box", {"box": [30, 30, 20, 50]}),
        ({"box": [0, 0, 161, 50]}, "box", {"box": [0, 0, 161, 50]}),
    ],
)
def test_the_api_gives_the_engines_reason(users, project, body, field, kwargs):
    image = add_picture(project, disk_picture())  # 160x120
    response = client_for(users["annotator"]).post(f"/api/images/{image.pk}/predict", body, format="json")
    assert response.status_code == 400, response.content
    engine = ClassicPredictor()
    engine.set_image(np.zeros((120, 160, 3), np.uint8))
    with pytest.raises(PromptValueError) as refused:
        engine.predict(**{k: np.asarray(v) for k, v in kwargs.items()})
    assert response.json()[field] == str(refused.value)


def test_a_line_box_is_a_prompt_for_the_api_too(users, project):
    image = add_picture(project, disk_picture())
    body = {"box": [80, 30, 80, 90], "multimask": False}
    response = client_for(users["annotator"]).post(f"/api/images/{image.pk}/predict", body, format="json")
    assert response.status_code == 200, response.content
    assert len(response.json()["masks"]) == 1
