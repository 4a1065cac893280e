"""Reads of label suggestions: the dashboard's view of heads, and kept-suggestion rates."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, F, Q

from annotator.masks.models import Mask
from annotator.projects.models import Project
from annotator.suggestions.models import HeadStatus, LabelHeadVersion


def head_summary(project: Project) -> dict[str, Any]:
    """Active head and recent candidates with their val metrics, for the API and the dashboard."""
    rows = list(LabelHeadVersion.objects.filter(project=project).defer("data").order_by("-id")[:10])

    def describe(row: LabelHeadVersion) -> dict[str, Any]:
        return {
            "id": row.pk,
            "status": row.status,
            "kind": row.kind,
            "model_version": row.model_version_id,
            "trigger": row.trigger,
            "training_run": row.training_run_id,
            "masks_trained": row.masks_trained,
            "metrics": row.metrics,
            "reason": row.reason,
            "created_at": row.created_at.isoformat(),
        }

    active = [describe(r) for r in rows if r.status == HeadStatus.ACTIVE]
    return {"active": active[0] if active else None, "heads": [describe(r) for r in rows]}


def kept_rates(project: Project) -> dict[str, Any]:
    """How often the suggested label was kept, overall and per model version: a data-engine metric
    (a kept suggestion saved the annotator choosing a label)."""
    suggested = Mask.objects.filter(project=project, suggested_label__isnull=False)
    by_version = (
        suggested.values("model_version_id")
        .annotate(total=Count("id"), kept=Count("id", filter=Q(label_id=F("suggested_label_id"))))
        .order_by("model_version_id")
    )
    total = suggested.count()
    kept = suggested.filter(label_id=F("suggested_label_id")).count()
    return {
        "suggested": total,
        "kept": kept,
        "rate": round(kept / total, 4) if total else None,
        "by_model_version": [
            {"model_version": r["model_version_id"], "suggested": r["total"], "kept": r["kept"]}
            for r in by_version
        ],
    }
