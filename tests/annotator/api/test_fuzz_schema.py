"""Schemathesis against the OpenAPI schema on a live server, authenticated with a superuser's
token: no operation answers 5xx to generated (valid and invalid) input. Bounded: a fixed seed, a
few examples per operation and a time budget for the whole run (about 60 s of requests)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.masks import encode_rle
from tests.conftest import add_image

pytestmark = pytest.mark.django_db(transaction=True)
TIME_BUDGET_S = 60


def schemathesis_cli() -> list[str]:
    found = Path(sys.executable).with_name("st")
    if found.exists():
        return [str(found)]
    if shutil.which("st"):
        return ["st"]
    pytest.skip("schemathesis is not installed: pip install -r requirements-test.txt")


@pytest.fixture
def seeded(django_user_model):
    """Rows for the generated ids to hit: a project with a label, images, a mask, a member."""
    from rest_framework.authtoken.models import Token

    from annotator.masks.services import create_mask
    from annotator.projects.services import add_member, create_label, create_project

    admin = django_user_model.objects.create_superuser(username="fuzz", password="fuzz-pw-123456")
    member = django_user_model.objects.create_user(username="member", password="member-pw-123456")
    project = create_project(name="Fuzz", creator=admin)
    add_member(project, user=member, role="annotator")
    create_label(project, name="thing", color="#ff0000")
    image = add_image(project, seed=1)
    add_image(project, seed=2)
    mask = np.zeros((image.height, image.width), bool)
    mask[5:20, 5:30] = True
    create_mask(image, segmentation=encode_rle(mask), annotator=admin)
    return Token.objects.create(user=admin).key


# Half of the generated path ids are ones that exist, so operations get past their 404.
CONFIG = """
[dictionaries.ids]
values = [1, 2]

[parameters]
"path.id" = { dictionary = "ids", probability = 0.5 }
"path.project_id" = { dictionary = "ids", probability = 0.5 }

"""


def test_no_operation_answers_a_server_error(live_server, seeded, tmp_path):
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        *schemathesis_cli(), "--config-file", str(config), "run", f"{live_server.url}/api/schema/",
        "--checks", "not_a_server_error",
        "--header", f"Authorization: Token {seeded}",
        "--max-examples", "6", "--seed", "20261204", "--max-time", str(TIME_BUDGET_S),
        "--phases", "examples,coverage,fuzzing", "--workers", "1", "--request-timeout", "20",
        "--suppress-health-check", "all", "--no-shrink",
        # Deleting the seeded rows would leave every later case a 404 (deletes: the access tests).
        "--exclude-method", "DELETE",
        "--report", "ndjson", "--report-dir", str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIME_BUDGET_S * 3)
    assert done.returncode == 0, done.stdout[-12000:] + done.stderr[-3000:]
