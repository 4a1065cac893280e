"""The label head: a calibrated linear classifier from mask features to a project's labels.

A linear softmax over standardised features is what a few hundred labelled masks can support without
over-fitting, trains in well under a second on a CPU, and is easy to calibrate: a single temperature
fitted on held-out masks makes its probabilities mean what they say, so "unknown" is simply a top
probability below a threshold.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

MIN_MASKS_PER_LABEL = 5
UNKNOWN_BELOW = 0.4
FORMAT_VERSION = 1


class LabelHeadError(ValueError):
    """The data cannot train a head (too few labels or masks); the message says what is missing."""


@dataclass(frozen=True)
class Suggestion:
    label_id: int
    name: str
    probability: float


@dataclass(frozen=True)
class Suggestions:
    """Top labels for one mask, best first; ``unknown`` when even the best is below the threshold."""

    items: list[Suggestion] = field(default_factory=list)
    unknown: bool = True

    def as_dict(self) -> dict:
        return {
            "unknown": self.unknown,
            "labels": [
                {"id": s.label_id, "name": s.name, "probability": round(s.probability, 4)} for s in self.items
            ],
        }


@dataclass
class LabelHead:
    label_ids: np.ndarray
    label_names: list[str]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: np.ndarray
    temperature: float = 1.0
    kind: str = "embedding"
    unknown_below: float = UNKNOWN_BELOW

    @property
    def n_features(self) -> int:
        return int(self.mean.shape[0])

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(N, D) features → (N, K) calibrated probabilities over ``label_ids``."""
        features = np.atleast_2d(np.asarray(features, dtype=np.float32))
        if features.shape[1] != self.n_features:
            raise ValueError(f"the head takes {self.n_features} features, got {features.shape[1]}")
        logits = ((features - self.mean) / self.scale) @ self.weights + self.bias
        logits = logits / self.temperature
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def suggest(
        self, features: np.ndarray, top_k: int = 3, current_labels: Mapping[int, str] | None = None
    ) -> Suggestions:
        """Top ``top_k`` labels for one mask. ``current_labels`` ({id: name}) is the project's label set
        now: a label deleted or renamed since training is never suggested, and the probabilities of
        the remaining labels are renormalised among themselves."""
        probabilities = self.probabilities(features)[0]
        keep = np.ones(len(self.label_ids), bool)
        if current_labels is not None:
            keep = np.array(
                [current_labels.get(int(i)) == name for i, name in zip(self.label_ids, self.label_names)]
            )
        if not keep.any():
            return Suggestions()
        probabilities = np.where(keep, probabilities, 0.0)
        probabilities = probabilities / probabilities.sum()
        order = [i for i in np.argsort(-probabilities, kind="stable") if keep[i]][:top_k]
        items = [
            Suggestion(int(self.label_ids[i]), self.label_names[i], float(probabilities[i])) for i in order
        ]
        return Suggestions(items=items, unknown=items[0].probability < self.unknown_below)

    # ---- storage: a plain .npz, no pickle ----------------------------------------------------------

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(
            buffer,
            format_version=np.array(FORMAT_VERSION),
            label_ids=self.label_ids.astype(np.int64),
            label_names=np.array(self.label_names, dtype=str),
            mean=self.mean,
            scale=self.scale,
            weights=self.weights,
            bias=self.bias,
            temperature=np.array(self.temperature),
            kind=np.array(self.kind),
            unknown_below=np.array(self.unknown_below),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> LabelHead:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as stored:
                if int(stored["format_version"]) != FORMAT_VERSION:
                    raise ValueError(
                        f"label head format {int(stored['format_version'])} is not {FORMAT_VERSION}"
                    )
                return cls(
                    label_ids=stored["label_ids"],
                    label_names=[str(n) for n in stored["label_names"]],
                    mean=stored["mean"].astype(np.float32),
                    scale=stored["scale"].astype(np.float32),
                    weights=stored["weights"].astype(np.float32),
                    bias=stored["bias"].astype(np.float32),
                    temperature=float(stored["temperature"]),
                    kind=str(stored["kind"]),
                    unknown_below=float(stored["unknown_below"]),
                )
        except (KeyError, OSError, EOFError, ValueError) as exc:
            raise ValueError(f"not a label head: {exc}") from exc


def train_label_head(
    features: np.ndarray,
    label_ids: Sequence[int],
    label_names: Mapping[int, str],
    kind: str = "embedding",
    min_per_label: int = MIN_MASKS_PER_LABEL,
    weight_decay: float = 1e-2,
    seed: int = 0,
) -> LabelHead:
    """Fit a head on (N, D) features of labelled masks. Labels with fewer than ``min_per_label``
    masks are left out (they could not be learned, and a wrong confident guess costs a keypress);
    at least two labels must remain. A fifth of each label is held out to fit the temperature,
    then the weights are refitted on everything."""
    features = np.asarray(features, dtype=np.float32)
    targets_raw = np.asarray(label_ids, dtype=np.int64)
    if features.ndim != 2 or len(features) != len(targets_raw):
        raise ValueError(f"features {features.shape} and {len(targets_raw)} labels do not match")
    kept, counts = np.unique(targets_raw, return_counts=True)
    kept = kept[counts >= min_per_label]
    if len(kept) < 2:
        have = {
            label_names.get(int(i), str(i)): int(c)
            for i, c in zip(*np.unique(targets_raw, return_counts=True))
        }
        raise LabelHeadError(
            f"label suggestions need at least 2 labels with {min_per_label} or more labelled masks each; "
            f"have {have or 'no labelled masks'}"
        )
    rows = np.isin(targets_raw, kept)
    x, y = features[rows], np.searchsorted(kept, targets_raw[rows])
    mean = x.mean(0)
    scale = x.std(0) + 1e-3
    xs = (x - mean) / scale
    rng = np.random.default_rng(seed)
    held = np.zeros(len(y), bool)
    for k in range(len(kept)):
        members = rng.permutation(np.flatnonzero(y == k))
        held[members[: max(1, len(members) // 5)]] = True
    weights, bias = _fit(xs[~held], y[~held], len(kept), weight_decay, seed)
    temperature = _fit_temperature(xs[held] @ weights + bias, y[held])
    weights, bias = _fit(xs, y, len(kept), weight_decay, seed)
    return LabelHead(
        label_ids=kept,
        label_names=[label_names.get(int(i), str(i)) for i in kept],
        mean=mean,
        scale=scale,
        weights=weights,
        bias=bias,
        temperature=temperature,
        kind=kind,
    )


def evaluate_label_head(head: LabelHead, features: np.ndarray, label_ids: Sequence[int]) -> dict:
    """Top-1/top-3 accuracy, per-label precision/recall and the confusion matrix on masks whose label
    the head knows (``unseen`` counts the others)."""
    targets = np.asarray(label_ids, dtype=np.int64)
    known = np.isin(targets, head.label_ids)
    result: dict = {"n": int(known.sum()), "unseen": int((~known).sum())}
    if not known.any():
        return {**result, "top1": None, "top3": None, "per_label": {}, "confusion": None}
    probabilities = head.probabilities(np.asarray(features, np.float32)[known])
    truth = np.searchsorted(head.label_ids, targets[known])
    ranked = np.argsort(-probabilities, axis=1, kind="stable")
    predicted = ranked[:, 0]
    k = len(head.label_ids)
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    per_label = {}
    for i, name in enumerate(head.label_names):
        tp = int(confusion[i, i])
        per_label[name] = {
            "precision": round(tp / confusion[:, i].sum(), 4) if confusion[:, i].sum() else None,
            "recall": round(tp / confusion[i].sum(), 4) if confusion[i].sum() else None,
            "support": int(confusion[i].sum()),
        }
    return {
        **result,
        "top1": round(float((predicted == truth).mean()), 4),
        "top3": round(float((ranked[:, :3] == truth[:, None]).any(axis=1).mean()), 4),
        "unknown_rate": round(float((probabilities.max(axis=1) < head.unknown_below).mean()), 4),
        "per_label": per_label,
        "confusion": {"labels": list(head.label_names), "matrix": confusion.tolist()},
    }


def _fit(
    x: np.ndarray, y: np.ndarray, classes: int, weight_decay: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression by full-batch L-BFGS (deterministic for a seed)."""
    torch.manual_seed(seed)
    features = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    targets = torch.from_numpy(y.astype(np.int64))
    weights = torch.zeros(features.shape[1], classes, requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    optimiser = torch.optim.LBFGS([weights, bias], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(features @ weights + bias, targets)
        loss = loss + weight_decay * (weights**2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return weights.detach().numpy(), bias.detach().numpy()


def _fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising held-out negative log-likelihood (a grid search: one parameter)."""
    best, best_nll = 1.0, np.inf
    for temperature in np.geomspace(0.25, 8.0, 41):
        scaled = logits / temperature
        scaled = scaled - scaled.max(axis=1, keepdims=True)
        log_probs = scaled - np.log(np.exp(scaled).sum(axis=1, keepdims=True))
        nll = -log_probs[np.arange(len(y)), y].mean()
        if nll < best_nll:
            best, best_nll = float(temperature), nll
    return best
