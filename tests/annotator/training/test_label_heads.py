"""The label head trains with every model training run and goes live with the run's version:
through the gate (when it also passes its own), by a manager's promotion, not otherwise."""

from __future__ import annotations

import pytest

from annotator.masks.models import Mask
from annotator.projects.models import Label
from annotator.suggestions.models import HeadStatus, LabelHeadVersion
from annotator.training import runs
from annotator.training.promotion import promote
from annotator.training.services import model_version_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def labelled(trainable, settings):
    settings.MASKMILL_LABEL_MIN_MASKS_PER_LABEL = 2
    settings.MASKMILL_LABEL_RETRAIN_EVERY = 0
    cat, dog = (
        Label.objects.get(project=trainable, name="cat"),
        Label.objects.get(project=trainable, name="dog"),
    )
    for i, mask in enumerate(Mask.objects.filter(project=trainable).order_by("id")):
        Mask.objects.filter(pk=mask.pk).update(label=cat if i % 2 else dog)
    return trainable


def test_a_promoted_run_brings_its_label_head_live(labelled):
    run = runs.request_training_run(labelled)
    runs.execute_run(run.pk)
    run.refresh_from_db()
    head = LabelHeadVersion.objects.get(training_run=run)
    assert head.trigger == "training_run" and head.masks_trained == 6
    assert head.model_version_id == run.result_version.embedding_version_id
    assert labelled.__class__.objects.get(pk=labelled.pk).active_model_version_id == run.result_version_id
    assert head.status == HeadStatus.ACTIVE  # the model's gate passed, and the head's own (no head yet)


def test_a_candidate_version_keeps_its_head_until_a_manager_promotes_it(labelled):
    base = model_version_for(labelled)
    run = runs.request_training_run(labelled, parameters={"promotion_margin": 5.0})
    runs.execute_run(run.pk)
    run.refresh_from_db()
    head = LabelHeadVersion.objects.get(training_run=run)
    assert model_version_for(labelled).pk == base.pk and head.status == HeadStatus.CANDIDATE
    promote(labelled, run.result_version)
    head.refresh_from_db()
    assert head.status == HeadStatus.ACTIVE
