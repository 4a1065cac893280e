"""An ingest taken end to end through a real worker: rows committed in PostgreSQL, ``embed``
tasks through Redis, the worker's result (an Embedding with a model, nothing without one)."""

from __future__ import annotations

import pytest
from celery.result import AsyncResult
from celery.signals import after_task_publish
from django.core.files.uploadedfile import SimpleUploadedFile

from annotator.celery import app
from annotator.images.models import Embedding, Image
from annotator.images.services import ingest_files
from annotator.images.tasks import embed
from annotator.projects.services import create_project
from tests.conftest import image_bytes

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def published_embeds():
    ids: list[str] = []

    def record(sender=None, headers=None, **kwargs) -> None:
        if sender == embed.name:
            ids.append(headers["id"])

    after_task_publish.connect(record, weak=False)
    yield ids
    after_task_publish.disconnect(record)


def test_ingest_is_embedded_by_the_worker(celery_worker_process, published_embeds, django_user_model):
    from django.db import connection

    assert connection.vendor == "postgresql"
    owner = django_user_model.objects.create_user(username="owner", password="pw")
    project = create_project(name="Integration", creator=owner)
    files = [
        SimpleUploadedFile("a.png", image_bytes(64, 48, seed=1)),
        SimpleUploadedFile("b.jpg", image_bytes(40, 80, fmt="JPEG", seed=2)),
        SimpleUploadedFile("c.txt", b"not an image"),
    ]
    result = ingest_files(project, files, owner)
    assert len(result.created) == 2 and [e["name"] for e in result.errors] == ["c.txt"]
    assert len(published_embeds) == 2  # one task per new image, sent after commit

    results = [AsyncResult(task_id, app=app) for task_id in published_embeds]
    outcomes = [r.get(timeout=180) for r in results]
    for r in results:
        r.forget()
    log = celery_worker_process["log"].read_text(errors="replace")
    if celery_worker_process["model"]:
        from engine.embeddings import load_embedding

        embeddings = Embedding.objects.filter(image__project=project).order_by("image_id")
        assert sorted(outcomes) == sorted(e.pk for e in embeddings) and len(embeddings) == 2
        for embedding in embeddings:
            with embedding.file.open("rb") as fileobj:
                assert tuple(load_embedding(fileobj).shape) == (1, 32, 8, 8)
        # Retried task: the worker finds the stored embedding and does not compute another.
        retried = embed.delay(result.created[0].pk)
        again = retried.get(timeout=120)
        retried.forget()
        assert again == embeddings[0].pk and Embedding.objects.count() == 2
    else:
        assert outcomes == [None, None]
        assert "classic segmenter needs no embedding" in log
        assert not Embedding.objects.exists()
    assert Image.objects.filter(project=project).count() == 2


def test_duplicate_ingest_on_postgres_is_skipped(celery_worker_process, published_embeds, django_user_model):
    owner = django_user_model.objects.create_user(username="owner2", password="pw")
    project = create_project(name="Dupes", creator=owner)
    data = image_bytes(seed=5)
    first = ingest_files(project, [SimpleUploadedFile("x.png", data)], owner)
    second = ingest_files(project, [SimpleUploadedFile("x.png", data)], owner)
    assert len(first.created) == 1 and second.duplicates[0]["image"] == first.created[0].pk
    assert len(published_embeds) == 1  # the duplicate sends no task
    # Let the worker finish the first image's embed: the transactional teardown truncates every
    # table, and a task still reading them deadlocks it (seen once in CI).
    for task_id in published_embeds:
        result = AsyncResult(task_id, app=app)
        result.get(timeout=180)
        result.forget()


def test_an_embed_task_waits_out_a_dead_claimant_then_computes(
    celery_worker_process, worker_model_env, settings, django_user_model
):
    """Another process took the claim on the embedding and died (a web process mid-computation,
    a lost worker): the worker's task does not compute beside it while the claim stands, comes back
    when it expires, takes it over and stores the embedding once."""
    import json
    from datetime import timedelta

    from django.core.files.base import ContentFile
    from django.utils import timezone

    from annotator.images.models import EmbeddingClaim
    from annotator.training.services import configured_model_version, forget_loaded_models

    if not celery_worker_process["model"]:
        pytest.skip("the worker runs without a model: nothing to embed")
    settings.MASKMILL_MODEL_TYPE = worker_model_env["MASKMILL_MODEL_TYPE"]
    settings.MASKMILL_CHECKPOINT = worker_model_env["MASKMILL_CHECKPOINT"]
    settings.MASKMILL_MODEL_CONFIG = json.loads(worker_model_env["MASKMILL_MODEL_CONFIG"])
    forget_loaded_models()
    version = configured_model_version()  # the worker's model, same row
    owner = django_user_model.objects.create_user(username="owner3", password="pw")
    project = create_project(name="Claims", creator=owner)
    image = Image(project=project, original_name="c.png", sha256="c" * 64, width=64, height=48)
    image.file.save("c.png", ContentFile(image_bytes(64, 48, seed=9)), save=False)
    image.save()  # no ingest: its own embed task would race this test's claim
    expires = timezone.now() + timedelta(seconds=3)
    EmbeddingClaim.objects.create(
        image=image, model_version=version, owner="dead-host:1:1", expires_at=expires
    )
    result = embed.delay(image.pk, version.pk)
    stored = result.get(timeout=120)
    result.forget()
    assert stored == Embedding.objects.get(image=image, model_version=version).pk
    assert not EmbeddingClaim.objects.exists()  # taken over, then released
    log = celery_worker_process["log"].read_text(errors="replace")
    assert f"embed[{result.id}] retry: Retry in" in log  # it waited for the claim before computing
