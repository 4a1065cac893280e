""" "Find every <label>": the automatic generator's masks for an image whose suggested label is the
asked one become ``proposed`` masks for the existing review flow. Labels are the project's own
taxonomy plus the synonyms a manager added, not open-vocabulary text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.core.exceptions import ValidationError
from django.db import transaction

from annotator.images.models import Image
from annotator.masks.models import Mask, MaskSource, MaskStatus
from annotator.projects.models import Label, Project
from annotator.suggestions.features import stored_embedding_features
from annotator.suggestions.services import SuggestionsUnavailable, current_labels, feature_version, head_for
from engine.masks import decode_rle

# A generator mask this close to a mask the image already has is the same object: not proposed again.
DUPLICATE_IOU = 0.85


@dataclass
class FindResult:
    label: Label
    proposed: list[Mask] = field(default_factory=list)
    candidates: int = 0  # generator masks looked at
    duplicates: int = 0  # matched the label but the image already had them

    def as_dict(self) -> dict:
        return {
            "label": {"id": self.label.pk, "name": self.label.name},
            "proposed": [m.pk for m in self.proposed],
            "candidates": self.candidates,
            "duplicates": self.duplicates,
        }


def resolve_label(project: Project, text: object) -> Label:
    """The project label named ``text`` (case-insensitive), or one listing it as a synonym."""
    if not isinstance(text, str) or not text.strip() or len(text) > 100:
        raise ValidationError({"label": "a label name (1 to 100 characters)"})
    wanted = text.strip().casefold()
    labels = list(Label.objects.filter(project=project))
    for label in labels:
        if label.name.casefold() == wanted:
            return label
    for label in labels:
        if any(isinstance(s, str) and s.strip().casefold() == wanted for s in label.synonyms or []):
            return label
    known = ", ".join(sorted(label.name for label in labels)) or "none yet"
    raise ValidationError(
        {
            "label": f"{text!r} is not a label of this project or a synonym of one (labels: {known}); "
            "find works on the project's own labels, not on free text"
        }
    )


def find_in_image(image: Image, label: Label, min_probability: float | None = None) -> FindResult:
    """Run the automatic generator (semi-automatic thresholds) on the image and propose every mask
    whose top suggestion is ``label``. Needs a SAM-family model (the classic segmenter has no
    automatic generator) and an active label head."""
    from annotator.images.embeddings import ensure_embedding
    from annotator.stages.generation import record_fields, run_generator

    project = image.project
    version = feature_version(project)
    if version is None:
        raise SuggestionsUnavailable(
            "find needs a SAM-family model: the classic segmenter has no automatic generator"
        )
    head = head_for(project, version)
    labels = current_labels(project)
    if label.pk not in head.label_ids.tolist():
        raise SuggestionsUnavailable(
            f"the label head has not learned {label.name!r} yet (too few accepted masks with that label)"
        )
    ensure_embedding(image.pk, version.pk)
    source = stored_embedding_features(image, version)
    if source is None:
        raise SuggestionsUnavailable("the image's embedding could not be read; try again shortly")
    from annotator.training.services import model_version_for

    records = run_generator(
        image, model_version_for(project), project.generation_params("semi_automatic")
    ).records
    threshold = head.unknown_below if min_probability is None else min_probability
    result = FindResult(label=label, candidates=len(records))
    existing = [
        decode_rle(rle)
        for rle in Mask.objects.filter(image=image)
        .exclude(status=MaskStatus.REJECTED)
        .values_list("segmentation", flat=True)
    ]
    chosen = []
    for record in records:
        fields = record_fields(record)
        mask = decode_rle(fields["segmentation"])
        suggestion = head.suggest(source.features(mask), top_k=1, current_labels=labels)
        if not suggestion.items or suggestion.items[0].label_id != label.pk:
            continue
        probability = suggestion.items[0].probability
        if probability < threshold:
            continue
        if any(_iou(mask, other) >= DUPLICATE_IOU for other in existing):
            result.duplicates += 1
            continue
        existing.append(mask)
        chosen.append(
            Mask(
                project=project,
                image=image,
                label=label,
                suggested_label=label,
                suggestion_probability=probability,
                source=MaskSource.SEMI,
                status=MaskStatus.PROPOSED,
                model_version=model_version_for(project),
                **fields,
            )
        )
    with transaction.atomic():
        result.proposed = Mask.objects.bulk_create(chosen)
    return result


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def find_in_images(label_id: int, image_ids: list[int]) -> dict[str, Any]:
    """Run find on each image (the job behind the project-wide find); errors are per image."""
    label = Label.objects.filter(pk=label_id).first()
    if label is None:
        return {"error": f"label {label_id} no longer exists"}
    proposed, errors = 0, {}
    for image in Image.objects.filter(pk__in=image_ids, project_id=label.project_id).select_related(
        "project"
    ):
        try:
            proposed += len(find_in_image(image, label).proposed)
        except SuggestionsUnavailable as exc:
            return {"proposed": proposed, "error": str(exc)}
        except (OSError, ValueError) as exc:
            errors[image.pk] = str(exc)
    return {"proposed": proposed, "errors": errors}
