"""Hostile image files are one refused file each, with the reason; the batch around them goes in,
through the API and through ``manage.py ingest``."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from rest_framework.test import APIClient

from annotator.images.models import Image
from tests.bad_inputs import BAD_IMAGES
from tests.conftest import add_image, image_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager_client(users) -> APIClient:
    client = APIClient()
    client.force_authenticate(users["manager"])
    return client


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_api_batch_refuses_the_bad_file_and_keeps_the_rest(manager_client, project, name):
    build, reason_word = BAD_IMAGES[name]
    files = [
        SimpleUploadedFile("before.png", image_bytes(seed=1), "image/png"),
        SimpleUploadedFile(name, build(), "application/octet-stream"),
        SimpleUploadedFile("after.png", image_bytes(seed=2), "image/png"),
    ]
    url = f"/api/projects/{project.pk}/images/"
    response = manager_client.post(url, {"files": files}, format="multipart")
    assert response.status_code == 201, response.content[:500]
    body = response.json()
    assert [c["name"] for c in body["created"]] == ["before.png", "after.png"]
    assert [e["name"] for e in body["errors"]] == [name]
    assert reason_word in body["errors"][0]["reason"].lower()


def test_ingest_command_reports_refused_files_and_ingests_the_rest(project, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a-good.png").write_bytes(image_bytes(seed=3))
    for name, (build, _) in BAD_IMAGES.items():
        (folder / name).write_bytes(build())
    (folder / "z-good.png").write_bytes(image_bytes(seed=4))
    out, err = io.StringIO(), io.StringIO()
    call_command("ingest", project.slug, str(folder), "--no-progress", stdout=out, stderr=err)
    assert sorted(Image.objects.filter(project=project).values_list("original_name", flat=True)) == [
        "a-good.png",
        "z-good.png",
    ]
    for name in BAD_IMAGES:
        assert f"refused {name}:" in err.getvalue()
    assert f"2 new, 0 duplicate, {len(BAD_IMAGES)} refused" in out.getvalue()


@pytest.mark.parametrize(
    ("size", "status"),
    [("64", 200), ("1", 200), ("5000", 200), ("²", 400), ("٣", 400), ("9" * 5000, 400), ("-3", 400),
     ("0", 400), ("1e3", 400), ("", 400), (" 12", 200)],
)  # fmt: skip
def test_thumbnail_size_is_parsed_defensively(manager_client, project, size, status):
    image = add_image(project, seed=9)
    response = manager_client.get(f"/api/images/{image.pk}/file", {"size": size})
    assert response.status_code == status, (size, response.content[:200])
    if status == 400:
        assert "size" in response.json()
