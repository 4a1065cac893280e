"""Fixtures shared by the platform's test layers (the engine's tests do not use them)."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image as PILImage


def image_bytes(
    width: int = 64, height: int = 48, mode: str = "RGB", fmt: str = "PNG", seed: int = 0, **save
) -> bytes:
    """A real encoded image with random content (so every call with another seed has new bytes)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    picture = PILImage.fromarray(pixels, "RGB")
    if mode == "I;16":
        picture = PILImage.fromarray((rng.integers(0, 65536, size=(height, width))).astype(np.uint16))
    elif mode != "RGB":
        picture = picture.convert(mode)
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt, **save)
    return buffer.getvalue()


@pytest.fixture(autouse=True, scope="session")
def _fast_password_hashing():
    """PBKDF2's deliberate slowness costs seconds per test user on a shared 2-core machine."""
    from django.conf import settings

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def make_image_bytes() -> Callable[..., bytes]:
    return image_bytes


@pytest.fixture
def users(django_user_model):
    """One user per role name, plus a superuser; password is the username."""
    made = {}
    for name in ("manager", "annotator", "reviewer", "outsider"):
        made[name] = django_user_model.objects.create_user(username=name, password=f"{name}-pw-123")
    made["admin"] = django_user_model.objects.create_superuser(username="root", password="root-pw-123")
    return made


@pytest.fixture
def project(users):
    """A project with a manager, an annotator and a reviewer, and two labels."""
    from annotator.projects.services import add_member, create_label, create_project

    created = create_project(name="Cats", creator=users["manager"])
    add_member(created, user=users["annotator"], role="annotator")
    add_member(created, user=users["reviewer"], role="reviewer")
    create_label(created, name="cat", color="#ff0000")
    create_label(created, name="dog", color="#00ff00")
    return created


@pytest.fixture
def other_project(django_user_model):
    """A project none of the ``users`` belongs to (its own manager is someone else)."""
    from annotator.projects.services import create_label, create_project

    stranger = django_user_model.objects.create_user(username="stranger", password="stranger-pw-123")
    created = create_project(name="Foreign", creator=stranger)
    create_label(created, name="foreign-label")
    return created


def add_image(project, seed: int = 0, width: int = 64, height: int = 48):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from annotator.images.services import ingest_files

    upload = SimpleUploadedFile(
        f"img{seed}.png", image_bytes(width, height, seed=seed), content_type="image/png"
    )
    result = ingest_files(project, [upload], None)
    assert result.created, result.as_dict()
    return result.created[0]


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix) -> None:
    """The integration session's test database gets a per-run name, so two runs sharing one
    PostgreSQL server (developers, CI jobs) never drop each other's database."""
    import os

    if os.environ.get("MASKMILL_INTEGRATION_SESSION") == "1":
        from django.conf import settings

        settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = f"test_maskmill_{os.getpid()}"
