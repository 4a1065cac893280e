"""Training runs end to end on the unit layer: a tiny model, real embeddings, the real engine."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from annotator.images.models import Embedding
from annotator.training import runs
from annotator.training.config import parse_training_settings
from annotator.training.gate import gate
from annotator.training.models import JobStatus, ModelStatus, ModelVersion, TrainingRun
from annotator.training.services import model_version_for

pytestmark = pytest.mark.django_db


def test_a_run_trains_evaluates_and_promotes_a_decoder_version(trainable):
    base = model_version_for(trainable)
    embeddings_before = Embedding.objects.count()
    run = runs.request_training_run(trainable)  # eager: the task ran on commit-less eager queue
    runs.execute_run(run.pk)
    run.refresh_from_db()
    assert run.status == JobStatus.DONE, run.reason
    assert run.metrics["data"]["masks"] == 6 and len(run.metrics["loss"]) == 3
    evaluation = run.metrics["evaluation"]
    assert evaluation["val_masks"] == 1 and {"mIoU@1", "NoC@85"} <= set(evaluation["candidate"])
    assert set(evaluation["active"]) == set(evaluation["candidate"])
    version = run.result_version
    assert (
        version.parent == base and version.encoder_id == base.pk and version.embedding_version_id == base.pk
    )
    trainable.refresh_from_db()
    # promotion_margin -1: any candidate passes the gate
    assert trainable.active_model_version == version and run.reason.startswith("promoted")
    assert ModelVersion.objects.get(pk=version.pk).status == ModelStatus.ACTIVE
    # The decoder-only version reads the base encoder's embeddings: nothing re-embedded.
    assert Embedding.objects.count() == embeddings_before
    assert model_version_for(trainable).pk == version.pk


def test_the_gate_keeps_a_candidate_that_is_not_better(trainable):
    run = runs.request_training_run(trainable, parameters={"promotion_margin": 5.0})
    runs.execute_run(run.pk)
    run.refresh_from_db()
    trainable.refresh_from_db()
    assert run.status == JobStatus.DONE and run.result_version is not None
    assert trainable.active_model_version_id != run.result_version_id
    assert run.reason.startswith("kept as candidate: mIoU@1") and run.metrics["promoted"] is False
    assert run.result_version.status == ModelStatus.CANDIDATE


@pytest.mark.parametrize(
    ("metric", "candidate", "active", "margin", "promoted"),
    [
        ("mIoU@1", 0.70, 0.60, 0.05, True),
        ("mIoU@1", 0.62, 0.60, 0.05, False),
        ("mIoU@1", 0.60, 0.60, 0.0, False),  # equal is not better
        ("NoC@85", 3.0, 4.0, 0.5, True),  # fewer clicks is better
        ("NoC@85", 4.0, 3.0, 0.0, False),
    ],
)
def test_gate(metric, candidate, active, margin, promoted):
    config = parse_training_settings({"promotion_metric": metric, "promotion_margin": margin})
    decision, why = gate({metric: candidate}, {metric: active}, config)
    assert decision is promoted and metric in why


def test_too_few_masks_says_how_many_are_needed(project, tiny_model):
    from tests.annotator.training.conftest import add_disk_image

    add_disk_image(project, 1)
    add_disk_image(project, 2, embed=False)  # no stored embedding: does not count in decoder mode
    with pytest.raises(ValidationError) as caught:
        runs.request_training_run(project)
    text = caught.value.messages[0]
    assert "at least 8 accepted masks" in text and "has 1" in text and "7 more needed" in text
    assert not TrainingRun.objects.exists()


def test_one_run_per_project_at_a_time(trainable):
    first = runs.request_training_run(trainable, enqueue=False)
    with pytest.raises(runs.TrainingBusy) as caught:
        runs.request_training_run(trainable, enqueue=False)
    assert caught.value.run == first


def test_a_run_whose_worker_died_starts_again_cleanly(trainable, settings):
    from datetime import timedelta
    from pathlib import Path

    from django.utils import timezone

    run = runs.request_training_run(trainable, enqueue=False)
    stale = timezone.now() - timedelta(hours=1)
    TrainingRun.objects.filter(pk=run.pk).update(
        status=JobStatus.RUNNING, attempts=1, started_at=stale, heartbeat_at=stale
    )
    folder = Path(settings.MASKMILL_MODEL_STORE) / "trained" / f"project-{trainable.pk}"
    folder.mkdir(parents=True)
    half = folder / f".run-{run.pk}-abcd1234.pth.x.tmp"
    half.write_bytes(b"half a checkpoint")
    assert runs.execute_run(run.pk) == JobStatus.DONE
    run.refresh_from_db()
    assert run.attempts == 2 and "restarted" in run.log and not half.exists()
    assert ModelVersion.objects.filter(project=trainable).count() == 1
    assert runs.execute_run(run.pk) == "finished"  # a late duplicate delivery does nothing


def test_a_second_delivery_while_the_run_is_alive_waits(trainable):
    from django.utils import timezone

    run = runs.request_training_run(trainable, enqueue=False)
    TrainingRun.objects.filter(pk=run.pk).update(status=JobStatus.RUNNING, heartbeat_at=timezone.now())
    with pytest.raises(runs.RunBusy):
        runs.execute_run(run.pk)


def test_nan_loss_fails_the_run_and_keeps_the_active_version(trainable, tmp_path):
    import torch

    from annotator.training.promotion import activate

    base = model_version_for(trainable)
    state = torch.load(base.checkpoint, weights_only=True)
    key = next(k for k in state if k.startswith("mask_decoder.") and k.endswith("weight"))
    state[key] = torch.full_like(state[key], float("nan"))
    poisoned = tmp_path / "nan.pt"
    torch.save(state, poisoned)
    broken = ModelVersion.objects.create(
        family=base.family, checkpoint=str(poisoned), config=base.config, encoder=base, project=trainable
    )
    activate(trainable, broken, kind="manual")
    run = runs.request_training_run(trainable)
    runs.execute_run(run.pk)
    run.refresh_from_db()
    trainable.refresh_from_db()
    assert run.status == JobStatus.FAILED and "the active version is kept" in run.reason
    assert trainable.active_model_version_id == broken.pk and run.result_version is None


def test_an_unreadable_embedding_is_computed_again(trainable):
    from annotator.images.models import Image

    image = Image.objects.filter(project=trainable, split="train").first()
    row = Embedding.objects.get(image=image)
    with row.file.open("wb") as fileobj:
        fileobj.write(b"not an npy file")
    run = runs.request_training_run(trainable)
    runs.execute_run(run.pk)
    run.refresh_from_db()
    assert run.status == JobStatus.DONE and run.metrics["data"]["masks"] == 6
    fresh = Embedding.objects.get(image=image)
    assert fresh.pk != row.pk


def test_cancelled_run_leaves_no_version(trainable):
    run = runs.request_training_run(trainable, enqueue=False)
    assert runs.cancel_run(run) and run.status == JobStatus.CANCELLED
    assert runs.execute_run(run.pk) == "finished"
    assert not ModelVersion.objects.filter(project=trainable).exists()


def test_a_full_fine_tune_gets_its_own_embeddings_after_promotion(
    trainable, django_capture_on_commit_callbacks
):
    base = model_version_for(trainable)
    before = set(Embedding.objects.values_list("pk", flat=True))
    run = runs.request_training_run(trainable, parameters={"mode": "full", "steps": 2}, enqueue=False)
    with django_capture_on_commit_callbacks(execute=True):
        runs.execute_run(run.pk)
    run.refresh_from_db()
    assert run.status == JobStatus.DONE, run.reason
    version = run.result_version
    assert version.encoder_id is None and version.embedding_version_id == version.pk
    assert version.parent == base and version.metrics["mode"] == "full"
    # Promoted: the project's images were queued on embed (eager here) under the new encoder,
    # and the old encoder's embeddings are kept (a rollback needs them).
    assert Embedding.objects.filter(model_version=version).count() == 7
    assert before <= set(Embedding.objects.values_list("pk", flat=True))


def test_a_custom_model_without_checkpoint_trains_from_its_seeded_weights(trainable, settings):
    """Its embeddings came from the per-version seeded random weights; training starts from the
    same weights and writes the first real checkpoint of the lineage."""
    from annotator.training.services import forget_loaded_models

    settings.MASKMILL_CHECKPOINT = ""
    forget_loaded_models()
    base = model_version_for(trainable)
    assert not base.checkpoint
    from tests.annotator.training.conftest import add_disk_image

    for seed in range(20, 24):  # embeddings under the checkpoint-less version
        add_disk_image(trainable, seed)
    run = runs.request_training_run(trainable, enqueue=False)
    runs.execute_run(run.pk)
    run.refresh_from_db()
    assert run.status == JobStatus.DONE, run.reason
    assert run.metrics["data"]["masks"] == 4 and run.result_version.checkpoint
    assert run.result_version.parent == base


def test_a_checkpoint_of_another_shape_fails_the_run_with_checkpoint_error(trainable):
    from annotator.training.promotion import activate

    base = model_version_for(trainable)
    wrong = ModelVersion.objects.create(
        family="custom",
        checkpoint=base.checkpoint,  # the tiny model's weights ...
        config={**base.config, "decoder_mlp_dim": 48},  # ... for other sizes
        encoder=base,
        project=trainable,
    )
    activate(trainable, wrong, kind="manual")
    run = runs.request_training_run(trainable, enqueue=False)
    assert runs.execute_run(run.pk) == JobStatus.FAILED
    run.refresh_from_db()
    assert run.reason.startswith("CheckpointError") and run.result_version is None


def test_a_run_given_back_by_a_dead_worker_child_restarts_at_once(trainable):
    """Its heartbeat is fresh, but the process that held it, on this machine, is gone."""
    import socket
    import subprocess

    from django.utils import timezone

    gone = subprocess.Popen(["true"])
    gone.wait()
    run = runs.request_training_run(trainable, enqueue=False)
    owner = {"host": socket.gethostname(), "pid": gone.pid}
    TrainingRun.objects.filter(pk=run.pk).update(
        status=JobStatus.RUNNING,
        heartbeat_at=timezone.now(),
        attempts=1,
        metrics={**run.metrics, "owner": owner},
    )
    assert runs.execute_run(run.pk) == JobStatus.DONE
    run.refresh_from_db()
    assert run.attempts == 2 and "restarted" in run.log
