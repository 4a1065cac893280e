"""Reads of training: a project's runs and its version lineage, shaped for the API and pages."""

from __future__ import annotations

from typing import Any

from annotator.projects.models import Project
from annotator.training.models import ModelPromotion, ModelVersion, TrainingRun
from annotator.training.promotion import versions_of
from annotator.training.services import model_version_for


def lineage(project: Project, limit: int = 100) -> list[dict[str, Any]]:
    """The project's versions, newest first: parent, encoder, data size, metrics, which is active."""
    active = model_version_for(project)
    rows = []
    versions = versions_of(project).select_related("parent").order_by("-id")[:limit]
    for v in versions:
        metrics = v.metrics or {}
        rows.append(
            {
                "id": v.pk,
                "name": str(v),
                "family": v.family,
                "status": v.status,
                "status_reason": v.status_reason,
                "active": active is not None and active.pk == v.pk,
                "parent": v.parent_id,
                "encoder": v.embedding_version_id,
                "shares_parent_encoder": v.encoder_id is not None,
                "project": v.project_id,
                "run": metrics.get("run"),
                "mode": metrics.get("mode"),
                "train_masks": metrics.get("train_masks"),
                "evaluation": metrics.get("evaluation"),
                "created_at": v.created_at,
            }
        )
    return rows


def run_summary(run: TrainingRun, *, with_log: bool = True) -> dict[str, Any]:
    """A run for the API and pages; lists leave the (long) log out."""
    metrics = run.metrics or {}
    evaluation = metrics.get("evaluation") or {}
    return {
        "id": run.pk,
        "project": run.project_id,
        "trigger": run.trigger,
        "status": run.status,
        "reason": run.reason,
        "progress": run.progress,
        "attempts": run.attempts,
        "base_version": run.base_version_id,
        "result_version": run.result_version_id,
        "promoted": metrics.get("promoted"),
        "parameters": run.parameters,
        "data": metrics.get("data"),
        "loss": metrics.get("loss") or [],
        "masks_per_second": metrics.get("masks_per_second"),
        "train_seconds": metrics.get("train_seconds"),
        "evaluation": evaluation,
        **({"log": run.log} if with_log else {}),
        "created_by": run.created_by_id,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
    }


def promotions(project: Project, limit: int = 50) -> list[ModelPromotion]:
    return list(
        ModelPromotion.objects.filter(project=project).select_related("version", "previous", "created_by")[
            :limit
        ]
    )


def version_of_project(project: Project, version_id: int) -> ModelVersion | None:
    return versions_of(project).filter(pk=version_id).first()
