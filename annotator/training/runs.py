"""Training runs: asked for (by hand, by the schedule, by the accepted-masks threshold), run on the
``train`` queue, evaluated against the active version and promoted only when better.

- One run per project at a time: a partial unique constraint holds it whatever asks at once.
- A run killed with its worker starts again from the beginning when its message comes back (late
  acknowledgement) or when it is asked for again after its heartbeat went stale.
- Never a half-written version: the checkpoint is written under a temporary name, renamed, and only
  then is the ModelVersion row created, in the same transaction that finishes the run.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import socket
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotator.jobs import TRANSIENT_ERRORS, UNFINISHED
from annotator.projects.models import Project
from annotator.training import data, learner
from annotator.training.config import (
    TrainingSettings,
    parse_training_settings,
    training_settings,
)
from annotator.training.gate import evaluate_both
from annotator.training.models import (
    JobStatus,
    ModelStatus,
    ModelVersion,
    PromotionKind,
    TrainingRun,
    TrainingTrigger,
)
from annotator.training.services import model_device, model_version_for

log = logging.getLogger(__name__)

OPEN = UNFINISHED
HEARTBEAT_SECONDS = 2.0


class TrainingBusy(Exception):
    """The project already has a run pending or running."""

    def __init__(self, run: TrainingRun) -> None:
        super().__init__(f"training run {run.pk} of this project is {run.status}; one run at a time")
        self.run = run


class NotEnoughData(ValidationError):
    def __init__(self, needed: int, have: int, mode: str) -> None:
        where = "train-split images" + (" with stored embeddings" if mode == "decoder" else "")
        super().__init__(
            {
                "detail": f"training needs at least {needed} accepted masks on {where}; the project has "
                f"{have} ({needed - have} more needed)"
            }
        )
        self.needed, self.have = needed, have


class RunCancelled(Exception):
    pass


class RunBusy(Exception):
    """The run is running and its heartbeat is fresh: this is a second delivery of its task (the
    broker redelivers long tasks), not a lost worker. Come back after ``wait`` seconds."""

    def __init__(self, run_id: int, wait: float) -> None:
        super().__init__(f"training run {run_id} is running elsewhere; checking again in {wait:.0f} s")
        self.wait = wait


def stale_after() -> timedelta:
    return timedelta(seconds=settings.MASKMILL_TRAIN_STALE_SECONDS)


def needed_masks(config: TrainingSettings) -> int:
    return config.min_masks or learner.min_samples()


def data_status(project: Project, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """How many masks a run would train on and how many it needs (for the page, API and command)."""
    config = training_settings(project, parameters)
    base = model_version_for(project)
    have = data.usable_count(
        data.training_masks(project, config), base.embedding_version_id if base else None, config.mode
    )
    return {
        "train_masks": have,
        "needed": needed_masks(config),
        "val_masks": data.validation_masks(project).count(),
        "mode": config.mode,
        "base_version": base.pk if base else None,
    }


def request_training_run(
    project: Project,
    *,
    trigger: str = TrainingTrigger.MANUAL,
    user: AbstractBaseUser | None = None,
    parameters: dict[str, Any] | None = None,
    enqueue: bool = True,
) -> TrainingRun:
    """Create a pending run and queue it. Raises ValidationError (bad parameters, no model, too few
    masks: how many are needed) or TrainingBusy (a run of the project is open; a stale one, whose
    worker died, is queued again and returned instead)."""
    config = training_settings(project, parameters)
    base = model_version_for(project)
    if base is None:
        raise ValidationError(
            {"detail": "no model is configured (the classic segmenter cannot be trained): set "
             "MASKMILL_MODEL_TYPE and MASKMILL_CHECKPOINT or activate a model version"}
        )  # fmt: skip
    status = data_status(project, parameters)
    if status["train_masks"] < status["needed"]:
        raise NotEnoughData(status["needed"], status["train_masks"], config.mode)
    try:
        with transaction.atomic():
            Project.objects.select_for_update().filter(pk=project.pk).first()
            open_run = TrainingRun.objects.filter(project=project, status__in=OPEN).first()
            if open_run is not None:
                if _is_stale(open_run):
                    _append_log(open_run, "its worker stopped answering; queued again")
                    if enqueue:
                        _enqueue(open_run.pk)
                    return open_run
                raise TrainingBusy(open_run)
            run = TrainingRun.objects.create(
                project=project,
                trigger=trigger,
                base_version=base,
                parameters=config.as_dict(),
                masks_since=timezone.now(),
                created_by=user if user is not None and user.is_authenticated else None,
                metrics={"data": status},
            )
            if enqueue:
                _enqueue(run.pk)
    except IntegrityError:  # another request created the project's run at the same moment
        raise TrainingBusy(TrainingRun.objects.filter(project=project, status__in=OPEN).first()) from None
    log.info("project %s: training run %s requested (%s)", project.pk, run.pk, trigger)
    return run


def _owner_is_dead(run: TrainingRun) -> bool:
    """The process that runs it was on this machine and is gone (a worker child killed and its task
    given back at once): no need to wait for the heartbeat to go stale."""
    owner = (run.metrics or {}).get("owner") or {}
    if owner.get("host") != socket.gethostname() or not isinstance(owner.get("pid"), int):
        return False
    if owner["pid"] == os.getpid():
        return False  # this very process: a second delivery to the same worker child
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _is_stale(run: TrainingRun) -> bool:
    if run.status != JobStatus.RUNNING:
        return False
    seen = run.heartbeat_at or run.started_at or run.created_at
    return timezone.now() - seen > stale_after()


def _enqueue(run_id: int) -> None:
    from annotator.training.tasks import train_run

    transaction.on_commit(lambda: train_run.delay(run_id))


def cancel_run(run: TrainingRun) -> bool:
    """Stop a pending or running run; a running one stops at its next progress report."""
    updated = TrainingRun.objects.filter(pk=run.pk, status__in=OPEN).update(
        status=JobStatus.CANCELLED, finished_at=timezone.now(), reason="cancelled"
    )
    run.refresh_from_db()
    return updated == 1


# ------------------------------------------------------------------------------------------------
# Running


def execute_run(run_id: int, worker: str = "") -> str:
    """Run it (idempotent: a finished run is left alone, a run found running belonged to a worker
    that died and starts again). Returns the run's status."""
    run = _claim(run_id, worker)  # may raise RunBusy
    if run is None:
        return "finished"
    try:
        _train_and_gate(run)
    except RunCancelled:
        log.info("training run %s cancelled", run.pk)
    except TRANSIENT_ERRORS:
        raise  # the task retries; the run is found running and starts again
    except learner.training_errors() as exc:
        _fail(run, f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # keep the reason on the run, and let the worker log the trace
        _fail(run, f"internal error: {type(exc).__name__}: {exc}")
        raise
    finally:
        _remove_temporary(run)
    run.refresh_from_db()
    return run.status


def _claim(run_id: int, worker: str) -> TrainingRun | None:
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.status not in OPEN:
            return None
        now = timezone.now()
        if run.status == JobStatus.RUNNING and not _is_stale(run) and not _owner_is_dead(run):
            seen = run.heartbeat_at or run.started_at or now
            raise RunBusy(run.pk, max(1.0, (seen + stale_after() - now).total_seconds() + 1))
        if run.status == JobStatus.RUNNING:
            line = (
                f"restarted by {worker or 'a worker'} after its previous worker stopped "
                f"(attempt {run.attempts + 1})"
            )
        else:
            line = f"started by {worker or 'a worker'}"
        run.status = JobStatus.RUNNING
        run.metrics = {**run.metrics, "owner": {"host": socket.gethostname(), "pid": os.getpid()}}
        run.started_at = run.started_at or now
        run.heartbeat_at = now
        run.attempts += 1
        run.progress = 0.0
        run.log = _log_line(run.log, line)
        run.save(
            update_fields=["status", "metrics", "started_at", "heartbeat_at", "attempts", "progress", "log"]
        )
    _remove_temporary(run)
    return run


def _train_and_gate(run: TrainingRun) -> None:
    config = parse_training_settings(run.parameters)
    project, base = run.project, run.base_version
    if base is None:
        raise ValueError("the run's base model version was deleted")
    masks = data.training_masks(project, config)
    if run.masks_since is not None:
        masks = masks.filter(accepted_at__lte=run.masks_since)
    selected = data.select(masks, base, mode=config.mode, limit=config.max_train_masks)
    needed = needed_masks(config)
    _record(run, data=selected.report())
    if len(selected.items) < needed:
        _fail(
            run, str(NotEnoughData(needed, len(selected.items), config.mode).messages[0]) + _skips(selected)
        )
        return
    device = model_device()
    model = learner.build(base)
    base_copy = learner.clone(model)
    progress = _Progress(run)
    started = time.perf_counter()
    outcome = learner.train(
        model, learner.samples(selected.items), config, device, progress, min_masks=needed
    )
    seconds = time.perf_counter() - started
    _record(
        run,
        loss=_thin(outcome.loss),
        masks_per_second=outcome.masks_per_second,
        train_seconds=round(seconds, 2),
    )
    if outcome.stopped or (outcome.loss and not math.isfinite(outcome.loss[-1][1])):
        _fail(run, f"training stopped: {outcome.stopped or 'loss is not finite'}; the active version is kept")
        return
    progress.check()
    active = model_version_for(Project.objects.get(pk=project.pk)) or base
    evaluation, decision = evaluate_both(run, config, base, active, model, base_copy, device)
    _record(run, evaluation=evaluation)
    from annotator.suggestions.services import heads_for_run

    heads_for_run(run)  # the label head trains with the model and goes live with its version
    progress.check()
    _store_version(run, config, base, model, selected, outcome, evaluation, decision)


def _store_version(
    run: TrainingRun,
    config: TrainingSettings,
    base: ModelVersion,
    model: Any,
    selected: data.Selection,
    outcome: learner.Outcome,
    evaluation: dict[str, Any],
    decision: tuple[bool, str],
) -> None:
    from annotator.training.promotion import activate

    store = Path(settings.MASKMILL_MODEL_STORE)
    relative = Path("trained") / f"project-{run.project_id}" / f"run-{run.pk}-{uuid.uuid4().hex[:8]}.pth"
    final = store / relative
    learner.save(model, final)  # complete under its final name, or not there at all
    digest = _sha256(final)
    promote, reason = decision
    try:
        with transaction.atomic():
            locked = TrainingRun.objects.select_for_update().get(pk=run.pk)
            if locked.status != JobStatus.RUNNING:
                raise RunCancelled()
            version = ModelVersion.objects.create(
                family=base.family,
                name=f"{run.project.slug} run {run.pk} ({config.mode})",
                checkpoint=str(relative),
                checkpoint_sha256=digest,
                config=base.config,
                parent=base,
                encoder_id=base.embedding_version_id if config.mode == "decoder" else None,
                project=run.project,
                status=ModelStatus.CANDIDATE,
                status_reason=reason,
                metrics={
                    "run": run.pk,
                    "mode": config.mode,
                    "train_masks": len(selected.items),
                    "steps": outcome.steps,
                    "final_loss": outcome.loss[-1][1] if outcome.loss else None,
                    "masks_per_second": outcome.masks_per_second,
                    "evaluation": evaluation.get("candidate"),
                    "val_masks": evaluation.get("val_masks"),
                },
            )
            locked.result_version = version
            locked.status = JobStatus.DONE
            locked.progress = 1.0
            locked.finished_at = timezone.now()
            locked.reason = reason
            locked.metrics = {**locked.metrics, "promoted": promote}
            locked.log = _log_line(locked.log, reason)
            locked.save(
                update_fields=[
                    "result_version",
                    "status",
                    "progress",
                    "finished_at",
                    "reason",
                    "metrics",
                    "log",
                ]
            )
            if promote:
                activate(run.project, version, kind=PromotionKind.GATED, reason=reason)
    except BaseException:
        final.unlink(missing_ok=True)  # no row points at it
        raise
    log.info("training run %s: version %s, %s", run.pk, version.pk, reason)


def _fail(run: TrainingRun, reason: str) -> None:
    TrainingRun.objects.filter(pk=run.pk, status=JobStatus.RUNNING).update(
        status=JobStatus.FAILED, finished_at=timezone.now(), reason=reason, error=reason[:5000]
    )
    log.warning("training run %s failed: %s", run.pk, reason)


def _skips(selected: data.Selection) -> str:
    if not selected.skipped:
        return ""
    return " (skipped: " + "; ".join(f"{n} {why}" for why, n in selected.skipped.most_common(5)) + ")"


def _record(run: TrainingRun, **metrics: Any) -> None:
    """Merge into the run's metrics (the page and the command read them while it runs)."""
    run.metrics = {**run.metrics, **metrics}
    TrainingRun.objects.filter(pk=run.pk).update(metrics=run.metrics, heartbeat_at=timezone.now())


class _Progress:
    """The engine's progress callback: loss curve and heartbeat into the row every few seconds, and
    the place a cancelled run stops."""

    def __init__(self, run: TrainingRun) -> None:
        self.run, self.curve, self.last = run, [], 0.0

    def __call__(self, step: int, total: int, loss: float) -> None:
        self.curve.append([step, loss if math.isfinite(loss) else None])
        now = time.monotonic()
        if now - self.last < HEARTBEAT_SECONDS and step < total:
            return
        self.last = now
        fraction = min(step / total, 1.0) if total else 0.0
        self.run.metrics = {**self.run.metrics, "loss": _thin(self.curve)}
        updated = TrainingRun.objects.filter(pk=self.run.pk, status=JobStatus.RUNNING).update(
            metrics=self.run.metrics, progress=round(fraction * 0.9, 4), heartbeat_at=timezone.now()
        )
        if not updated:
            raise RunCancelled()

    def check(self) -> None:
        if not TrainingRun.objects.filter(pk=self.run.pk, status=JobStatus.RUNNING).exists():
            raise RunCancelled()


def _thin(curve: list[list[Any]], limit: int = 500) -> list[list[Any]]:
    """At most ``limit`` points of a curve (every k-th, and the last)."""
    if len(curve) <= limit:
        return list(curve)
    k = math.ceil(len(curve) / limit)
    return [*curve[::k], curve[-1]] if (len(curve) - 1) % k else curve[::k]


def _remove_temporary(run: TrainingRun) -> None:
    folder = Path(settings.MASKMILL_MODEL_STORE) / "trained" / f"project-{run.project_id}"
    if folder.is_dir():
        for stray in folder.glob(f".run-{run.pk}-*.tmp"):  # a killed writer's temporary file
            stray.unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fileobj:
        for chunk in iter(lambda: fileobj.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _log_line(text: str, line: str) -> str:
    return f"{text}{timezone.now():%Y-%m-%d %H:%M:%S} {line}\n"[-20000:]


def _append_log(run: TrainingRun, line: str) -> None:
    run.log = _log_line(run.log, line)
    TrainingRun.objects.filter(pk=run.pk).update(log=run.log)
