"""The move of AnnotationSession from the stages app to the annotation app keeps its table and rows:
a visit recorded before the move is the same row after it, read through the new model."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("annotation", "0002_delete_embeddingclaim"), ("stages", "0002_prefill_origin")]
AFTER = [("annotation", "0003_annotationsession"), ("stages", "0003_annotationsession_moved")]


def migrate(targets: list[tuple[str, str]]):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_annotation_session_keeps_its_table_and_rows_when_it_moves_app(django_user_model):
    old_apps = migrate(BEFORE)
    assert old_apps.get_model("stages", "AnnotationSession")._meta.db_table == "stages_annotationsession"
    with pytest.raises(LookupError):
        old_apps.get_model("annotation", "AnnotationSession")
    # The other apps' tables are as the current models say (only two apps were migrated back).
    from annotator.images.models import Image
    from annotator.projects.models import Project

    user = django_user_model.objects.create(username="visitor")
    project = Project.objects.create(name="Moved")
    image = Image.objects.create(project=project, file="x.png", width=4, height=3, sha256="0" * 64)
    before = old_apps.get_model("stages", "AnnotationSession").objects.create(
        project_id=project.pk, image_id=image.pk, annotator_id=user.pk, clicks=7, masks=2
    )

    new_apps = migrate(AFTER)
    with pytest.raises(LookupError):
        new_apps.get_model("stages", "AnnotationSession")
    moved = new_apps.get_model("annotation", "AnnotationSession").objects.get(pk=before.pk)
    assert (moved.image_id, moved.annotator_id, moved.clicks, moved.masks) == (image.pk, user.pk, 7, 2)

    from annotator.annotation.models import AnnotationSession

    assert AnnotationSession.objects.filter(pk=before.pk, clicks=7).exists()
    migrate(BEFORE)  # and back: the row is still there for the old owner
    assert migrate(BEFORE).get_model("stages", "AnnotationSession").objects.filter(pk=before.pk).exists()
    migrate(AFTER)
