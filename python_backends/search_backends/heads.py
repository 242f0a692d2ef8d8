"""Turn head logits into answers (numpy only): intent labels/probabilities, duplicate probability."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from .contracts.product_search import (
    DEFAULT_TOP_K,
    HEAD_FILE,
    HEAD_FILE_PARAMETER,
    LABEL,
    LABELS_FILE,
    LABELS_FILE_PARAMETER,
    PROBABILITIES,
    TOP_K,
    TOP_K_PARAMETER,
    TOP_LABELS,
    TOP_PROBABILITIES,
)
from .model_parameters import int_parameter


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
    labels: np.ndarray  # object [B]: best label per row
    probabilities: np.ndarray  # float32 [B, C], columns in class-id order
    top_labels: np.ndarray  # object [B, k], best first
    top_probabilities: np.ndarray  # float32 [B, k]

    def outputs(self) -> dict[str, np.ndarray]:
        """The served intent outputs (labels as UTF-8 bytes), by tensor name."""
        encode = np.vectorize(lambda s: s.encode("utf-8"), otypes=[np.object_])
        return {
            LABEL: encode(self.labels).reshape(-1, 1),
            PROBABILITIES: self.probabilities,
            TOP_LABELS: encode(self.top_labels),
            TOP_PROBABILITIES: self.top_probabilities,
        }


def classify(
    logits: np.ndarray, id2label: Mapping[int | str, str] | Sequence[str], top_k: int = 1
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


class IntentHead:
    """The intent head graph over pooled embeddings, with per-request top-k (the query_intent_head model and the
    local target's fused query_intent_encoder share it)."""

    def __init__(self, head_path, labels_path, default_top_k: int = 3):
        import json

        from .onnx_runner import make_session

        self.session = make_session(head_path, intra_op_threads=1)
        self.input_name = self.session.get_inputs()[0].name
        with open(labels_path, encoding="utf-8") as f:
            self.id2label = json.load(f)
        self.num_labels = len(self.id2label)
        if not 1 <= default_top_k <= self.num_labels:
            raise ValueError(f"top_k must be between 1 and {self.num_labels}, got {default_top_k}")
        self.default_top_k = default_top_k

    @classmethod
    def from_parameters(cls, folder, params: Mapping[str, str]) -> "IntentHead":
        """The head a model's config parameters name (files relative to its version ``folder``)."""
        return cls(
            folder / params.get(HEAD_FILE_PARAMETER, HEAD_FILE),
            folder / params.get(LABELS_FILE_PARAMETER, LABELS_FILE),
            int_parameter(params, TOP_K_PARAMETER, DEFAULT_TOP_K, minimum=1),
        )

    def top_k(self, value) -> int:
        """A request's TOP_K (None: the default), or InputError naming the field."""
        from .text_input import InputError

        if value is None:
            return self.default_top_k
        values = np.asarray(value).reshape(-1)
        if values.size == 0 or values.dtype.kind not in "iu":
            raise InputError(f"{TOP_K} must be one integer, got {values.tolist()!r}")
        k = int(values[0])
        if not 1 <= k <= self.num_labels:
            raise InputError(f"{TOP_K} must be between 1 and {self.num_labels}, got {k}")
        return k

    def predict(self, pooled: np.ndarray, spans: Sequence[tuple[int, int, int]]) -> list[IntentPredictions]:
        """One head call for the whole batch; ``spans`` are (start, stop, k) rows per request."""
        logits = self.session.run(None, {self.input_name: np.ascontiguousarray(pooled, dtype=np.float32)})[0]
        return [classify(logits[start:stop], self.id2label, top_k=k) for start, stop, k in spans]


class DuplicateHead:
    """The duplicate head graph over pooled pair embeddings (the product_duplicate_head model)."""

    def __init__(self, head_path):
        from .onnx_runner import make_session

        self.session = make_session(head_path, intra_op_threads=1)
        self.input_name = self.session.get_inputs()[0].name

    @classmethod
    def from_parameters(cls, folder, params: Mapping[str, str]) -> "DuplicateHead":
        return cls(folder / params.get(HEAD_FILE_PARAMETER, HEAD_FILE))

    def predict(self, pooled: np.ndarray) -> np.ndarray:
        """P(duplicate), float32 [B, 1], for a whole batch in one head call."""
        logits = self.session.run(None, {self.input_name: np.asarray(pooled, dtype=np.float32)})[0]
        return duplicate_probability(logits).reshape(-1, 1)
