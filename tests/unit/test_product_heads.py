"""Product-search models: pair encoding policy, numpy heads, ONNX parity and held-out accuracy.

Oracles: the Hugging Face tokenizer for token ids, PyTorch for the heads' maths and for the
exported graphs (the committed checkpoint ``models/product_heads`` chained encoder -> head).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from search_backends.heads import classify, duplicate_probability, sigmoid, softmax  # noqa: E402
from search_backends.pair_encoding import fair_allocate  # noqa: E402
from search_build.training.product_data import INTENT_LABELS


def test_fair_allocate_is_longest_first():
    assert fair_allocate([10, 3], 20) == [10, 3]
    assert fair_allocate([10, 3], 9) == [6, 3]
    assert fair_allocate([10, 10], 9) == [5, 4]
    assert fair_allocate([0, 50], 7) == [0, 7]
    assert fair_allocate([5, 5], 0) == [0, 0]


# --------------------------------------------------------------------------- numpy heads


def test_heads_match_torch():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=5, size=(33, 4)).astype(np.float32)
    logits[0] = [1e4, -1e4, 0, 3]  # extreme values must not overflow
    np.testing.assert_allclose(
        softmax(logits), torch.softmax(torch.from_numpy(logits), -1).numpy(), rtol=1e-5, atol=1e-7
    )
    x = np.concatenate([rng.normal(scale=10, size=50), [-1e4, 1e4, 0.0]]).astype(np.float32)
    with np.errstate(over="raise"):
        np.testing.assert_allclose(sigmoid(x), torch.sigmoid(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-7)

    id2label = {str(i): label for i, label in enumerate(INTENT_LABELS)}
    assert classify(logits[:1], id2label).labels[0] == INTENT_LABELS[0]
    logits = logits[1:]  # row 0 has exact ties in the probabilities; tie order is not compared
    result = classify(logits, id2label, top_k=2)
    top = torch.topk(torch.softmax(torch.from_numpy(logits), -1), 2)
    np.testing.assert_array_equal(result.labels, np.array(INTENT_LABELS, dtype=object)[top.indices[:, 0].numpy()])
    np.testing.assert_array_equal(result.top_labels, np.array(INTENT_LABELS, dtype=object)[top.indices.numpy()])
    np.testing.assert_allclose(result.top_probabilities, top.values.numpy(), rtol=1e-5)
    assert classify(logits, list(INTENT_LABELS)).top_labels.shape == (32, 1)

    single = rng.normal(size=(7, 1)).astype(np.float32)
    want = torch.sigmoid(torch.from_numpy(single[:, 0])).numpy()
    np.testing.assert_allclose(duplicate_probability(single), want, rtol=1e-6)
    np.testing.assert_allclose(duplicate_probability(single[:, 0]), want, rtol=1e-6)
    two = rng.normal(size=(7, 2)).astype(np.float32)
    np.testing.assert_allclose(
        duplicate_probability(two), torch.softmax(torch.from_numpy(two), -1)[:, 1].numpy(), rtol=1e-6
    )
    with pytest.raises(ValueError):
        classify(logits[:, :3], id2label)


# --------------------------------------------------------------------------- exported models
