"""images.embeddings.load_stored: the one reader of stored embeddings, and what it does with a
stored file that cannot be read (drop the row, so the embedding is computed again)."""

from __future__ import annotations

import pytest

from annotator.images.embeddings import ensure_embedding, load_stored
from annotator.images.models import Embedding
from annotator.training.services import model_version_for
from tests.annotator.annotation_fixtures import add_picture, disk_picture, tiny_sam  # noqa: F401

pytestmark = pytest.mark.django_db


def test_a_stored_embedding_is_read_and_an_unreadable_one_is_computed_again(tiny_sam, project):  # noqa: F811
    image = add_picture(project, disk_picture())
    model_version = model_version_for(project)
    first = ensure_embedding(image.pk)
    stored = load_stored(image, model_version)
    assert stored is not None and stored.input_size == tuple(first.input_size)
    assert tuple(stored.tensor.shape) == tuple(first.shape)

    with first.file.open("wb") as broken:
        broken.write(b"not an npy file")
    assert load_stored(image, model_version) is None
    assert not Embedding.objects.filter(pk=first.pk).exists()
    again = ensure_embedding(image.pk)
    assert again.pk != first.pk and load_stored(image, model_version) is not None
