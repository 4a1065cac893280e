"""``manage.py train / promote / rollback``: what a manager types, and what it prints."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from annotator.training.models import JobStatus, TrainingRun

pytestmark = pytest.mark.django_db


def run_command(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_train_inline_watch_then_rollback_and_promote(trainable):
    text = run_command("train", trainable.slug, "--inline", "--steps", "2")
    run = TrainingRun.objects.get()
    assert run.status == JobStatus.DONE and run.parameters["steps"] == 2
    assert "6 train masks, 1 val masks" in text and "step 2: loss" in text
    assert "candidate: mIoU@1" in text and "active: mIoU@1" in text and f"run {run.pk} done: promoted" in text
    text = run_command("rollback", trainable.slug)
    assert f"rolled back to version {run.base_version_id}" in text
    text = run_command("promote", str(trainable.pk), str(run.result_version_id))
    assert f"version {run.result_version_id} active" in text


def test_train_says_why_not(other_project, tiny_model):
    project = other_project  # no masks
    with pytest.raises(CommandError, match="8 more needed"):
        run_command("train", project.slug, "--mode", "decoder", "--steps", "1", "--inline")
    with pytest.raises(CommandError, match="no project"):
        run_command("train", "no-such-project")
    with pytest.raises(CommandError, match="nothing to roll back to"):
        run_command("rollback", project.slug)
    with pytest.raises(CommandError, match="not one of project"):
        run_command("promote", project.slug, "99999")


def test_watch_reports_a_failed_run(trainable):
    run = TrainingRun.objects.create(project=trainable, status=JobStatus.FAILED, reason="loss became nan")
    with pytest.raises(CommandError, match="loss became nan"):
        run_command("train", trainable.slug, "--run", str(run.pk), "--watch")
