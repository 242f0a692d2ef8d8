"""Sentence-embedding pooling (numpy), the same maths the exported encoder graph applies."""
from __future__ import annotations

import numpy as np


def mean_pool(token_embeddings: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Average of the token vectors that the attention mask keeps; [N, L, D] -> [N, D]."""
    mask = attention_mask[..., None].astype(token_embeddings.dtype)
    summed = (token_embeddings * mask).sum(axis=1)
    return summed / np.clip(mask.sum(axis=1), 1e-9, None)


def l2_normalize(vectors: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, eps)
