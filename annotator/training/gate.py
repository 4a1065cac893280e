"""The evaluation gate: the candidate and the active version under the click protocol on the same
val-split masks, and the decision to promote only when the candidate is better by the project's
margin."""

from __future__ import annotations

import math
from typing import Any

from annotator.training import data, learner
from annotator.training.config import LOWER_IS_BETTER, TrainingSettings
from annotator.training.models import ModelVersion, TrainingRun


def evaluate_both(
    run: TrainingRun,
    config: TrainingSettings,
    base: ModelVersion,
    active: ModelVersion,
    candidate: Any,
    base_model: Any,
    device: str,
) -> tuple[dict[str, Any], tuple[bool, str]]:
    """Both models on the same val-split masks; (promote?, why)."""
    mode = config.mode
    val_candidate = data.select(
        data.validation_masks(run.project), base, mode=mode, limit=config.max_val_masks, embed_missing=False
    )
    val_active = val_candidate
    if mode == "decoder" and active.embedding_version_id != base.embedding_version_id:
        val_active = data.select(
            data.validation_masks(run.project),
            active,
            mode=mode,
            limit=config.max_val_masks,
            embed_missing=False,
        )
        common = {i.mask_id for i in val_candidate.items} & {i.mask_id for i in val_active.items}
        val_candidate.items = [i for i in val_candidate.items if i.mask_id in common]
        val_active.items = [i for i in val_active.items if i.mask_id in common]
    evaluation: dict[str, Any] = {
        "val_masks": len(val_candidate.items),
        "skipped": dict(val_candidate.skipped),
        "active_version": active.pk,
        "metric": config.promotion_metric,
        "margin": config.promotion_margin,
    }
    if not val_candidate.items:
        return evaluation, (False, "no accepted masks on val-split images to evaluate on; kept as candidate")
    active_model = base_model if active.pk == base.pk else learner.build(active)
    active_model.to(device)
    kwargs = {"max_clicks": config.max_clicks}
    evaluation["candidate"] = learner.evaluate(candidate, learner.samples(val_candidate.items), **kwargs)
    evaluation["active"] = learner.evaluate(active_model, learner.samples(val_active.items), **kwargs)
    return evaluation, gate(evaluation["candidate"], evaluation["active"], config)


def gate(candidate: dict[str, float], active: dict[str, float], config: TrainingSettings) -> tuple[bool, str]:
    """Promote only when the candidate beats the active version by the project's margin."""
    name, margin = config.promotion_metric, config.promotion_margin
    new, old = candidate.get(name), active.get(name)
    if new is None or old is None or not (math.isfinite(new) and math.isfinite(old)):
        return False, f"{name} missing from the evaluation; kept as candidate"
    gain = (old - new) if name in LOWER_IS_BETTER else (new - old)
    better = "lower" if name in LOWER_IS_BETTER else "higher"
    text = f"{name} {new:.4f} vs active {old:.4f} (must be {better} by at least {margin:g})"
    if gain >= margin and gain > 0:
        return True, f"promoted: {text}"
    return False, f"kept as candidate: {text}"
