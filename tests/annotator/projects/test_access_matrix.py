"""Every endpoint × every role × own/foreign project. A member gets what the role allows (403
otherwise), a non-member 404 (the project's existence is not revealed), anonymous 401, and a
superuser everything. Expected codes come from one table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from annotator.masks.services import create_mask
from annotator.projects.models import Membership
from annotator.projects.services import add_member, create_label, create_project
from engine.masks import encode_rle
from tests.conftest import add_image, image_bytes

pytestmark = pytest.mark.django_db

ROLES = ["manager", "annotator", "reviewer", "non_member", "anonymous", "superuser"]
READ = {"manager": 200, "annotator": 200, "reviewer": 200}


def managers(code: int) -> dict[str, int]:
    return {"manager": code, "annotator": 403, "reviewer": 403}


def editors(code: int) -> dict[str, int]:
    return {"manager": code, "annotator": code, "reviewer": 403}


def everyone(code: int) -> dict[str, int]:
    return {"manager": code, "annotator": code, "reviewer": code}


@dataclass(frozen=True)
class Endpoint:
    method: str
    url: str  # formatted with the world's ids
    expected: dict[str, int]  # for the members' roles; the other roles follow the rules above
    body: Any = None
    multipart: bool = False

    def __str__(self) -> str:
        return f"{self.method} {self.url}"


def _rle(world: dict) -> dict:
    mask = np.zeros((48, 64), bool)
    mask[10:20, 5:30] = True
    return encode_rle(mask)


ENDPOINTS = [
    Endpoint("GET", "/api/projects/{project}/", READ),
    Endpoint("PATCH", "/api/projects/{project}/", managers(200), {"description": "new words"}),
    Endpoint("DELETE", "/api/projects/{project}/", managers(204)),
    Endpoint("GET", "/api/projects/{project}/labels/", READ),
    Endpoint("POST", "/api/projects/{project}/labels/", managers(201), {"name": "bird", "color": "#123456"}),
    Endpoint("GET", "/api/labels/{label}/", READ),
    Endpoint("PATCH", "/api/labels/{label}/", managers(200), {"color": "#00ff00"}),
    Endpoint("DELETE", "/api/labels/{label}/", managers(204)),
    Endpoint("GET", "/api/projects/{project}/memberships/", READ),
    Endpoint(
        "POST", "/api/projects/{project}/memberships/", managers(201), {"user": "newbie", "role": "annotator"}
    ),
    Endpoint("GET", "/api/memberships/{membership}/", READ),
    Endpoint("PATCH", "/api/memberships/{membership}/", managers(200), {"role": "reviewer"}),
    Endpoint("DELETE", "/api/memberships/{membership}/", managers(204)),
    Endpoint("GET", "/api/projects/{project}/images/", READ),
    Endpoint("POST", "/api/projects/{project}/images/", managers(201), "upload", multipart=True),
    Endpoint("GET", "/api/images/{image}/", READ),
    Endpoint("PATCH", "/api/images/{image}/", managers(200), {"split": "val"}),
    Endpoint("DELETE", "/api/images/{image}/", managers(204)),
    Endpoint("GET", "/api/images/{image}/file", READ),
    Endpoint("GET", "/api/images/{image}/file?size=32", READ),
    Endpoint("GET", "/api/images/{image}/masks/", READ),
    Endpoint("POST", "/api/images/{image}/masks/", editors(201), "rle"),
    Endpoint("GET", "/api/masks/{mask}/", READ),
    Endpoint(
        "PATCH",
        "/api/masks/{mask}/",
        everyone(200),
        {"version": 1, "status": "rejected", "review_note": "edge"},
    ),
    Endpoint("DELETE", "/api/masks/{mask}/?version=1", editors(204)),
]


def expected_code(endpoint: Endpoint, role: str, own: bool) -> int:
    if role == "anonymous":
        return 401
    if role == "superuser":
        return endpoint.expected["manager"]
    if role == "non_member" or not own:
        return 404
    return endpoint.expected[role]


def populate(project, annotator) -> dict[str, int]:
    """A label, an annotator's membership, an image and a mask in ``project``."""
    label = create_label(project, name="thing")
    membership = add_member(project, user=annotator, role="annotator")
    image = add_image(project, seed=project.pk * 100)
    mask = create_mask(image, segmentation=_rle({}), annotator=None, label=label)
    return {
        "project": project.pk,
        "label": label.pk,
        "membership": membership.pk,
        "image": image.pk,
        "mask": mask.pk,
    }


@pytest.fixture
def worlds(django_user_model):
    make = django_user_model.objects.create_user
    users = {
        name: make(username=name, password="pw")
        for name in ("manager", "annotator", "reviewer", "non_member")
    }
    users["superuser"] = django_user_model.objects.create_superuser(username="root", password="pw")
    make(username="newbie", password="pw")
    own = create_project(name="Own", creator=users["manager"])
    add_member(own, user=users["reviewer"], role="reviewer")
    stranger = make(username="stranger", password="pw")
    foreign = create_project(name="Foreign", creator=stranger)
    return {
        "users": users,
        "own": populate(own, users["annotator"]),
        "foreign": populate(foreign, make(username="foreign-annotator", password="pw")),
    }


@pytest.mark.parametrize("own", [True, False], ids=["own", "foreign"])
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_access(worlds, endpoint: Endpoint, role: str, own: bool):
    ids = worlds["own" if own else "foreign"]
    client = APIClient()
    if role != "anonymous":
        client.force_authenticate(worlds["users"][role])
    url = endpoint.url.format(**ids)
    body = endpoint.body
    if body == "rle":
        body = {"segmentation": _rle(ids), "label": ids["label"]}
    if endpoint.multipart:
        files = [SimpleUploadedFile("new.png", image_bytes(seed=7), content_type="image/png")]
        response = client.post(url, {"files": files}, format="multipart")
    else:
        response = client.generic(
            endpoint.method,
            url,
            **({"data": _json(body), "content_type": "application/json"} if body else {}),
        )
    want = expected_code(endpoint, role, own)
    assert response.status_code == want, (str(endpoint), role, own, getattr(response, "data", None))
    if want == 404:
        assert "Foreign" not in response.content.decode(errors="ignore")


def _json(body: Any) -> str:
    import json

    return json.dumps(body)


@pytest.mark.parametrize("role", ROLES)
def test_project_list_shows_only_the_users_projects(worlds, role):
    client = APIClient()
    if role != "anonymous":
        client.force_authenticate(worlds["users"][role])
    response = client.get("/api/projects/")
    if role == "anonymous":
        assert response.status_code == 401
        return
    names = sorted(p["name"] for p in response.json()["results"])
    expected = {"non_member": [], "superuser": ["Foreign", "Own"]}.get(role, ["Own"])
    assert names == expected


@pytest.mark.parametrize("role", ROLES)
def test_creating_projects_needs_the_add_project_permission(worlds, role):
    client = APIClient()
    if role != "anonymous":
        client.force_authenticate(worlds["users"][role])
    response = client.post("/api/projects/", {"name": "Brand new"}, format="json")
    assert response.status_code == {"anonymous": 401, "superuser": 201}.get(role, 403)
    if role == "superuser":
        assert Membership.objects.get(project_id=response.json()["id"]).role == "manager"
