"""``python manage.py train <project> [--watch]``: ask for a training run (queued on the ``train``
workers, or ``--inline`` in this process), watch its loss and evaluation, and print the outcome:
promoted, or kept as candidate / failed with the reason."""

from __future__ import annotations

import time

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotator.stages.management.commands._common import find_project
from annotator.training import runs, selectors
from annotator.training.models import JobStatus, TrainingRun, TrainingTrigger

PENDING_HINT_SECONDS = 30


class Command(BaseCommand):
    help = (
        "Train a project's model on its accepted masks, evaluate the result against the active "
        "version on the val split and promote it when it is better by the project's margin."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="project slug or id")
        parser.add_argument("--watch", action="store_true", help="follow the run until it ends")
        parser.add_argument("--mode", choices=["decoder", "full"], help="default: the project setting")
        parser.add_argument("--steps", type=int, help="training steps (default: the project setting)")
        parser.add_argument("--inline", action="store_true", help="train in this process (no worker)")
        parser.add_argument("--run", type=int, help="watch or --cancel this run instead of starting one")
        parser.add_argument("--cancel", action="store_true", help="cancel the run given by --run")
        parser.add_argument("--interval", type=float, default=1.0, help="seconds between progress reads")

    def handle(self, *args, project: str, **options) -> None:
        target = find_project(project)
        if options["run"] is not None:
            run = TrainingRun.objects.filter(pk=options["run"], project=target).first()
            if run is None:
                raise CommandError(f"project {target.slug} has no training run {options['run']}")
            if options["cancel"]:
                runs.cancel_run(run)
                self.stdout.write(f"run {run.pk}: {run.status}")
                return
        else:
            parameters = {k: options[k] for k in ("mode", "steps") if options[k] is not None}
            try:
                run = runs.request_training_run(
                    target,
                    trigger=TrainingTrigger.MANUAL,
                    parameters=parameters or None,
                    enqueue=not options["inline"],
                )
            except runs.TrainingBusy as exc:
                raise CommandError(f"{exc} (watch it with --run {exc.run.pk} --watch)") from exc
            except ValidationError as exc:
                raise CommandError("; ".join(exc.messages)) from exc
            data = run.metrics.get("data", {})
            self.stdout.write(
                f"training run {run.pk} of {target.slug}: {data.get('train_masks')} train masks, "
                f"{data.get('val_masks')} val masks, base version {run.base_version_id}, "
                f"mode {run.parameters.get('mode')}"
            )
            if options["inline"]:
                runs.execute_run(run.pk, worker="manage.py train --inline")
        if options["watch"] or options["inline"]:
            self.watch(run, options["interval"])

    def watch(self, run: TrainingRun, interval: float) -> None:
        started, shown = time.monotonic(), 0
        hinted = False
        while True:
            run.refresh_from_db()
            loss = (run.metrics or {}).get("loss") or []
            for step, value in loss[shown:]:
                self.stdout.write(f"  step {step:g}: loss {value if value is None else f'{value:.4f}'}")
            shown = len(loss)
            if run.status not in (JobStatus.PENDING, JobStatus.RUNNING):
                break
            if (
                run.status == JobStatus.PENDING
                and not hinted
                and time.monotonic() - started > PENDING_HINT_SECONDS
            ):
                self.stdout.write("  still pending: is a worker taking the `train` queue? (or use --inline)")
                hinted = True
            time.sleep(max(interval, 0.1))
        self.report(run)
        if run.status != JobStatus.DONE:
            raise CommandError(f"run {run.pk} {run.status}: {run.reason or run.error}")

    def report(self, run: TrainingRun) -> None:
        summary = selectors.run_summary(run)
        evaluation = summary["evaluation"] or {}
        if summary["masks_per_second"]:
            self.stdout.write(f"throughput: {summary['masks_per_second']:.1f} masks/s")
        for who in ("candidate", "active"):
            if who in evaluation:
                figures = ", ".join(f"{k} {v:.3f}" for k, v in evaluation[who].items())
                self.stdout.write(f"{who:>9}: {figures}  ({evaluation.get('val_masks')} val masks)")
        self.stdout.write(f"run {run.pk} {run.status}: {run.reason}")
        if run.result_version_id:
            self.stdout.write(f"new version {run.result_version_id}")
