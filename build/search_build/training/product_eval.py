"""Held-out metrics for the product heads (numpy), shared by training and the tests."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Probability that a random positive outscores a random negative (ties count half)."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    # Rank-sum (Mann-Whitney U) with average ranks for ties.
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    u = ranks[labels].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def intent_report(labels: Sequence[str], predicted: Sequence[str], label_names: Sequence[str]) -> dict:
    labels, predicted = np.asarray(labels, dtype=object), np.asarray(predicted, dtype=object)
    per_class = {}
    for name in label_names:
        is_true, is_pred = labels == name, predicted == name
        hits = int((is_true & is_pred).sum())
        per_class[name] = {
            "n": int(is_true.sum()),
            "recall": hits / max(1, int(is_true.sum())),
            "precision": hits / max(1, int(is_pred.sum())),
        }
    return {"n": len(labels), "accuracy": float((labels == predicted).mean()), "per_class": per_class}


def duplicate_report(
    labels: Sequence[int], probabilities: np.ndarray, kinds: Sequence[str] | None = None, threshold: float = 0.5
) -> dict:
    labels = np.asarray(labels).astype(bool)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    predicted = probabilities >= threshold
    tp = int((predicted & labels).sum())
    precision = tp / max(1, int(predicted.sum()))
    recall = tp / max(1, int(labels.sum()))
    report = {
        "n": int(len(labels)),
        "threshold": threshold,
        "accuracy": float((predicted == labels).mean()),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "roc_auc": roc_auc(labels, probabilities),
    }
    if kinds is not None:
        kinds = np.asarray(kinds, dtype=object)
        report["accuracy_by_kind"] = {
            k: float((predicted[kinds == k] == labels[kinds == k]).mean()) for k in sorted(set(kinds))
        }
    return report
