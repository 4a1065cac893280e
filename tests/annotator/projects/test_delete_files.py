"""Deleting a project (or an image) removes its image files and embeddings from storage, through
the storage API and only once the deletion is committed."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from rest_framework.test import APIClient

from annotator.images.models import Embedding
from annotator.projects.models import Project
from annotator.training.models import ModelVersion
from tests.conftest import add_image

pytestmark = pytest.mark.django_db


def with_embedding(image) -> Embedding:
    version = ModelVersion.objects.get_or_create(family="custom", config={"t": 1}, defaults={"name": "t"})[0]
    embedding = Embedding(image=image, model_version=version)
    embedding.file.save("e.npy", ContentFile(b"\x93NUMPY"), save=False)
    embedding.save()
    return embedding


def stored(project) -> list[str]:
    names = []
    for image in project.images.all():
        names.append(image.file.name)
        names.extend(e.file.name for e in image.embeddings.all())
    return names


def test_deleting_a_project_deletes_its_files_after_commit(project, other_project, users,
                                                          django_capture_on_commit_callbacks):  # fmt: skip
    for seed in range(3):
        with_embedding(add_image(project, seed=seed))
    kept = stored_with(other_project)
    names = stored(project)
    assert len(names) == 6 and all(default_storage.exists(n) for n in names)
    client = APIClient()
    client.force_authenticate(users["manager"])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert client.delete(f"/api/projects/{project.pk}/").status_code == 204
    assert all(default_storage.exists(n) for n in names)  # not before the commit
    for callback in callbacks:
        callback()
    assert not any(default_storage.exists(n) for n in names)
    assert all(default_storage.exists(n) for n in kept)  # another project's files stay


def stored_with(project) -> list[str]:
    with_embedding(add_image(project, seed=99))
    return stored(project)


def test_a_rolled_back_deletion_keeps_the_files(project, django_capture_on_commit_callbacks):
    with_embedding(add_image(project, seed=5))
    names = stored(project)
    with django_capture_on_commit_callbacks(execute=True):
        try:
            with transaction.atomic():
                Project.objects.get(pk=project.pk).delete()
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
    assert all(default_storage.exists(n) for n in names)


def test_deleting_an_image_deletes_its_file_and_embeddings(
    project, users, django_capture_on_commit_callbacks
):
    image = add_image(project, seed=7)
    with_embedding(image)
    names = stored(project)
    client = APIClient()
    client.force_authenticate(users["manager"])
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(f"/api/images/{image.pk}/").status_code == 204
    assert not any(default_storage.exists(n) for n in names)
