"""Label suggestions: mask features (from the image embedding, or from pixels for the classic
segmenter) and a small calibrated head that maps them to a project's own labels."""

from engine.labels.features import classic_features, embedding_features, shape_features
from engine.labels.head import (
    MIN_MASKS_PER_LABEL,
    LabelHead,
    LabelHeadError,
    Suggestion,
    Suggestions,
    evaluate_label_head,
    train_label_head,
)

__all__ = [
    "MIN_MASKS_PER_LABEL",
    "LabelHead",
    "LabelHeadError",
    "Suggestion",
    "Suggestions",
    "classic_features",
    "embedding_features",
    "evaluate_label_head",
    "shape_features",
    "train_label_head",
]
