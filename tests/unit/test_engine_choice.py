"""CPU encoder engines: OpenVINO and ONNX Runtime on the same exported graph, the engine/precision choice per
target, the build-time parity gate (and its automatic FP32 fallback), and the configs each choice renders."""

from __future__ import annotations


import numpy as np
import pytest

from search_backends import graph_engines as G
from search_build.repository import engine_choice as E
from search_build.export import engine_parity as P

needs_openvino = pytest.mark.skipif(not G.openvino_available(), reason="openvino not installed")


@pytest.mark.parametrize(
    "target, engine, precision, want",
    [
        ("triton-gpu", "auto", "auto", ("tensorrt", "fp32")),
        ("triton-gpu", "auto", "fp16", ("tensorrt", "fp16")),
        ("local", "onnxruntime", "auto", ("onnxruntime", "fp32")),
        ("local", "auto", "int8", ("onnxruntime", "int8")),
        ("triton-cpu", "onnxruntime", "int8", ("onnxruntime", "int8")),
    ],
)
def test_engine_choice(target, engine, precision, want):
    choice = E.choose_engine(target, engine, precision)
    assert (choice.engine, choice.precision) == want


@needs_openvino
def test_auto_is_openvino_at_the_cpus_best_precision(monkeypatch):
    best = "bf16" if G.cpu_supports_bf16() else "fp32"
    for target in ("local", "triton-cpu"):
        choice = E.choose_engine(target)
        assert (choice.engine, choice.precision) == ("openvino", best)
        assert choice.auto_precision == (best == "bf16")
    monkeypatch.setattr(E, "cpu_supports_bf16", lambda: False)
    choice = E.choose_engine("local", "openvino", "bf16")
    assert choice.precision == "fp32" and "no bf16 kernels" in choice.notes[0]
    assert not choice.auto_precision  # asked for: a gate failure stops the build instead of falling back


@pytest.mark.parametrize(
    "target, engine, precision, message",
    [
        ("local", "auto", "fp16", "needs TensorRT"),
        ("triton-cpu", "onnxruntime", "bf16", "use --engine openvino"),
        ("local", "openvino", "int8", "use --engine onnxruntime"),
        ("triton-gpu", "openvino", "auto", "CPU engine"),
        ("local", "tvm", "auto", "engine must be"),
    ],
)
def test_engine_choice_refusals_say_what_to_do(target, engine, precision, message):
    if engine == "openvino" and not G.openvino_available():
        pytest.skip("openvino not installed")
    with pytest.raises(E.EngineChoiceError, match=message):
        E.choose_engine(target, engine, precision)


def test_top_k_overlap():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 16))
    assert P.top_k_overlap(x, x) == 1.0
    assert P.top_k_overlap(x, rng.standard_normal((50, 16))) < 0.5


def _ranked_report(want: np.ndarray, got: np.ndarray, labels: np.ndarray) -> dict:
    half = len(labels) // 2  # two batches: the gate pools them before ranking
    parts = [(P.Ranked(want[s], labels[s]), P.Ranked(got[s], labels[s])) for s in (slice(0, half), slice(half, None))]
    return {"outputs": {}, "probed": {}, "ranked": {"duplicate_probability": P._ranked_stats(parts)}}


def test_ranked_probe_is_judged_by_roc_auc_not_by_value():
    """Duplicate probabilities answer to ROC-AUC within MAX_AUC_DIFF of FP32 (issue 14's gate), not to the 1e-3
    value limit: an order-keeping shift of 0.03 passes (and is reported), a reordering of the ranking fails."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 2000)
    fp32 = np.clip(0.5 + 0.25 * (labels - 0.5) + rng.normal(0, 0.2, len(labels)), 0.001, 0.999)
    shifted = fp32 + 0.03 * np.sin(7 * fp32) ** 2  # monotone (slope >= 0.79): the same order
    report = _ranked_report(fp32, shifted, labels)
    stats = report["ranked"]["duplicate_probability"]
    assert stats["rows"] == len(labels) and stats["max_abs"] > 10 * P.MAX_PROBE_DIFF
    assert abs(stats["auc_diff"]) < 1e-12 and P.failures(report, "bf16") == []
    assert 0.9 < stats["decisions_agree"] < 1.0  # a shift near 0.5 flips some decisions: reported, not gated
    assert "ROC-AUC" in P.summary("product_encoder", {"engine": "openvino", "precision": "bf16", **report})

    scrambled = fp32 + rng.normal(0, 0.05, len(labels))
    report = _ranked_report(fp32, scrambled, labels)
    assert abs(report["ranked"]["duplicate_probability"]["auc_diff"]) > P.MAX_AUC_DIFF
    (failure,) = P.failures(report, "bf16")
    assert failure.startswith("duplicate_probability: ROC-AUC") and f"> {P.MAX_AUC_DIFF}" in failure
