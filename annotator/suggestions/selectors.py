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


def dashboard_section(project: Project) -> dict[str, Any]:
    """The dashboard's label-suggestion section: the active head's val metrics (top-1/top-3, per
    label, confusion), recent heads, and the kept-suggestion rate by model version as a chart."""
    from annotator.annotation import charts
    from annotator.training.models import ModelVersion

    summary = head_summary(project)
    kept = kept_rates(project)
    names = dict(
        ModelVersion.objects.filter(
            pk__in=[r["model_version"] for r in kept["by_model_version"] if r["model_version"]]
        ).values_list("pk", "name")
    )
    rows = [
        (
            names.get(r["model_version"])
            or (f"version #{r['model_version']}" if r["model_version"] else "classic"),
            round(100 * r["kept"] / r["suggested"], 1) if r["suggested"] else None,
        )
        for r in kept["by_model_version"]
    ]
    return {
        **summary,
        "kept": kept,
        "kept_chart": charts.bar_chart(rows, title="Suggested labels kept, by model version", unit=" %"),
        "accuracy_chart": charts.bar_chart(
            [
                (f"head #{h['id']} ({h['status']})", round(100 * h["metrics"]["top1"], 1))
                for h in reversed(summary["heads"])
                if h["metrics"].get("top1") is not None
            ],
            title="Label head: val top-1 accuracy",
            unit=" %",
        ),
    }
