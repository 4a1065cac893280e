"""engine.labels: features, training, calibration, suggestions and storage of the label head."""

from __future__ import annotations

import numpy as np
import pytest

from engine.labels import (
    LabelHead,
    LabelHeadError,
    classic_features,
    embedding_features,
    evaluate_label_head,
    shape_features,
    train_label_head,
)
from tests.label_data import NAMES, synthetic_embedding_masks, synthetic_scene_masks


def test_shape_features_describe_size_and_position() -> None:
    small = np.zeros((100, 200), bool)
    small[10:20, 10:20] = True
    large = np.zeros((100, 200), bool)
    large[:, 100:] = True
    a, b = shape_features(small), shape_features(large)
    assert a[0] < b[0]  # log area
    assert a[2] == pytest.approx(1.0)  # a full rectangle fills its box
    assert a[3] < 0 < b[3]  # centroid x left vs right of the centre
    assert not shape_features(np.zeros((5, 5), bool)).any()


def test_embedding_features_pool_inside_and_ring() -> None:
    embedding = np.zeros((1, 4, 16, 16), np.float32)
    embedding[0, 0, :8, :8] = 1.0  # channel 0 where the object is
    embedding[0, 1] = 1.0  # channel 1 everywhere
    mask = np.zeros((64, 64), bool)
    mask[:32, :32] = True  # the image is square: input size = img size = 64
    features = embedding_features(embedding, mask, (64, 64), img_size=64)
    inside, ring = features[:4], features[4:8]
    assert inside[0] > 0.6 and inside[0] > ring[0]
    assert ring[1] == pytest.approx(1.0, abs=1e-3)
    assert features.shape == (4 * 2 + 7,)


def test_embedding_features_tiny_mask_uses_its_cell() -> None:
    embedding = np.random.default_rng(0).normal(size=(8, 16, 16)).astype(np.float32)
    mask = np.zeros((1000, 1000), bool)
    mask[500, 500] = True
    features = embedding_features(embedding, mask, (1024, 1024), img_size=1024)
    assert np.isfinite(features).all() and np.abs(features[:8]).sum() > 0


def test_classic_features_are_finite_for_odd_inputs() -> None:
    image = np.zeros((30, 40, 3), np.uint8)
    mask = np.zeros((30, 40), bool)
    mask[0, 0] = True
    assert np.isfinite(classic_features(image, mask)).all()
    grey = np.full((300, 3000), 128, np.uint8)
    wide = np.zeros((300, 3000), bool)
    wide[100:200, :] = True
    assert np.isfinite(classic_features(grey, wide)).all()
    with pytest.raises(ValueError, match="empty"):
        classic_features(image, np.zeros((30, 40), bool))


def test_head_learns_distinct_classes_from_pixels() -> None:
    train = synthetic_scene_masks(n_images=24, seed=1)
    test = synthetic_scene_masks(n_images=12, seed=2)
    x_train = np.stack([classic_features(img, m) for img, m, _ in train])
    x_test = np.stack([classic_features(img, m) for img, m, _ in test])
    head = train_label_head(x_train, [lab for *_, lab in train], NAMES, kind="classic")
    metrics = evaluate_label_head(head, x_test, [lab for *_, lab in test])
    assert metrics["top1"] >= 0.8, metrics
    assert metrics["top3"] >= metrics["top1"]
    assert set(metrics["per_label"]) == set(NAMES.values())
    assert np.asarray(metrics["confusion"]["matrix"]).sum() == metrics["n"]


def test_head_learns_from_embeddings_and_is_calibrated() -> None:
    x_train, y_train = synthetic_embedding_masks(n=240, seed=3)
    x_test, y_test = synthetic_embedding_masks(n=240, seed=4)
    head = train_label_head(x_train, y_train, NAMES)
    metrics = evaluate_label_head(head, x_test, y_test)
    assert metrics["top1"] >= 0.8, metrics
    # Calibration: the mean top probability is close to the accuracy.
    top = head.probabilities(x_test).max(axis=1).mean()
    assert abs(top - metrics["top1"]) < 0.15


def test_training_is_deterministic_and_round_trips_through_bytes() -> None:
    x, y = synthetic_embedding_masks(n=80, seed=5)
    a = train_label_head(x, y, NAMES, seed=7)
    b = train_label_head(x, y, NAMES, seed=7)
    np.testing.assert_array_equal(a.weights, b.weights)
    restored = LabelHead.from_bytes(a.to_bytes())
    np.testing.assert_allclose(restored.probabilities(x), a.probabilities(x), rtol=1e-6)
    assert restored.label_names == a.label_names and restored.kind == a.kind
    with pytest.raises(ValueError, match="not a label head"):
        LabelHead.from_bytes(b"garbage")


def test_too_few_masks_per_label_is_refused_with_counts() -> None:
    x, _ = synthetic_embedding_masks(n=12, seed=6)
    with pytest.raises(LabelHeadError, match="at least 2 labels"):
        train_label_head(x[:4], [1, 1, 2, 3], NAMES)
    with pytest.raises(LabelHeadError, match="no labelled masks"):
        train_label_head(x[:0], [], NAMES)


def test_labels_with_too_few_masks_are_left_out() -> None:
    x, y = synthetic_embedding_masks(n=60, seed=8)
    y = np.asarray(y)
    rare = np.flatnonzero(y == 3)[:2]
    keep = np.concatenate([np.flatnonzero(y != 3), rare])
    head = train_label_head(x[keep], y[keep], NAMES)
    assert 3 not in head.label_ids.tolist()


def test_suggest_respects_the_current_label_set_and_unknown() -> None:
    x, y = synthetic_embedding_masks(n=120, seed=9)
    head = train_label_head(x, y, NAMES)
    sample = x[int(np.flatnonzero(np.asarray(y) == 1)[0])]
    suggestions = head.suggest(sample, top_k=3, current_labels=NAMES)
    assert suggestions.items[0].label_id == 1 and not suggestions.unknown
    assert len(suggestions.items) == 3
    assert sum(s.probability for s in suggestions.items) <= 1.0 + 1e-6
    renamed = {**NAMES, 1: "renamed"}
    assert 1 not in [s.label_id for s in head.suggest(sample, current_labels=renamed).items]
    deleted = {k: v for k, v in NAMES.items() if k != 1}
    assert 1 not in [s.label_id for s in head.suggest(sample, current_labels=deleted).items]
    assert head.suggest(sample, current_labels={}).unknown
    assert head.suggest(sample, current_labels={}).items == []
    # A feature vector far from everything seen is not confidently any label after renormalisation
    # among two near-equal labels; the flag follows the threshold.
    head.unknown_below = 1.01
    assert head.suggest(sample).unknown
    with pytest.raises(ValueError, match="features"):
        head.suggest(np.zeros(3, np.float32))
