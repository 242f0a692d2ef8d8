"""Turn head logits into answers (numpy only): intent labels/probabilities, duplicate probability."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax in float32 (shifting by the max keeps exp from overflowing)."""
    x = np.asarray(logits, dtype=np.float32)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Stable logistic: exp is only taken of non-positive numbers."""
    x = np.asarray(logits, dtype=np.float32)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32)


def id2label_list(id2label: Mapping[int | str, str] | Sequence[str]) -> list[str]:
    """``{"0": "media", ...}`` (JSON keys are strings) or a list -> labels indexed by class id."""
    if isinstance(id2label, Mapping):
        ids = sorted(int(k) for k in id2label)
        if ids != list(range(len(ids))):
            raise ValueError(f"id2label ids must be 0..N-1, got {ids}")
        return [id2label[k] if k in id2label else id2label[str(k)] for k in ids]
    return list(id2label)


@dataclass(frozen=True)
class IntentPredictions:
    labels: np.ndarray         # object [B]: best label per row
    probabilities: np.ndarray  # float32 [B, C], columns in class-id order
    top_labels: np.ndarray     # object [B, k], best first
    top_probabilities: np.ndarray  # float32 [B, k]


def classify(logits: np.ndarray, id2label: Mapping[int | str, str] | Sequence[str], top_k: int = 1
             ) -> IntentPredictions:
    """Softmax over [B, C] logits, best label and the ``top_k`` labels per row (ties: lower id first)."""
    labels = np.asarray(id2label_list(id2label), dtype=object)
    logits = np.asarray(logits, dtype=np.float32)
    if logits.ndim != 2 or logits.shape[1] != len(labels):
        raise ValueError(f"expected logits [B, {len(labels)}], got {list(logits.shape)}")
    probs = softmax(logits)
    k = max(1, min(top_k, len(labels)))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    top_probs = np.take_along_axis(probs, order, axis=1)
    return IntentPredictions(labels[order[:, 0]], probs, labels[order], top_probs)


def duplicate_probability(logits: np.ndarray) -> np.ndarray:
    """P(duplicate) per row, float32 [B]. One logit per row ([B] or [B, 1]) -> sigmoid;
    two-class logits [B, 2] -> softmax column 1."""
    x = np.asarray(logits, dtype=np.float32)
    if x.ndim == 1:
        return sigmoid(x)
    if x.ndim == 2 and x.shape[1] == 1:
        return sigmoid(x[:, 0])
    if x.ndim == 2 and x.shape[1] == 2:
        return softmax(x)[:, 1]
    raise ValueError(f"expected duplicate logits [B], [B, 1] or [B, 2], got {list(x.shape)}")
