"""The demo project ``make run`` creates: the photos shipped in annotator/demo/photos and an admin."""

from __future__ import annotations

import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from annotator.images.services import IMAGE_SUFFIXES, IngestResult, ingest_files
from annotator.projects.models import Project
from annotator.projects.services import create_label, create_project

DEMO_PHOTOS = Path(__file__).resolve().parent.parent / "demo" / "photos"
DEMO_SLUG = "demo"
DEMO_LABELS = {"person": "#e53935", "animal": "#43a047", "object": "#1e88e5", "background": "#8e8e8e"}


def ensure_admin(credentials_file: Path | None = None) -> tuple[str, str] | None:
    """Create the ``admin`` superuser when no superuser exists; return (username, password) then.

    The random password is also written to ``credentials_file`` (mode 600) so it is not lost if the
    terminal scrolls away; it is printed only by the run that created it.
    """
    User = get_user_model()
    if User.objects.filter(is_superuser=True).exists():
        return None
    password = secrets.token_urlsafe(12)
    User.objects.create_superuser(username="admin", email="admin@localhost", password=password)
    credentials_file = credentials_file or Path(settings.VAR_DIR) / "admin-credentials.txt"
    credentials_file.parent.mkdir(parents=True, exist_ok=True)
    credentials_file.write_text(f"username: admin\npassword: {password}\n", encoding="utf-8")
    credentials_file.chmod(0o600)
    return "admin", password


def ensure_demo_project() -> tuple[Project, IngestResult]:
    """The demo project with its labels and photos; running it again adds nothing twice."""
    User = get_user_model()
    admin = User.objects.filter(is_superuser=True).order_by("id").first()
    with transaction.atomic():
        project = Project.objects.filter(slug=DEMO_SLUG).first()
        if project is None:
            project = create_project(
                name="Demo", slug=DEMO_SLUG, creator=admin,
                description="Public-domain sample photos from scikit-image to try Maskmill on.",
            )  # fmt: skip
            for name, color in DEMO_LABELS.items():
                create_label(project, name=name, color=color)
    photos = sorted(p for p in DEMO_PHOTOS.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    result = ingest_files(project, photos, admin)
    return project, result
