"""Build-time parity gate: the engine and precision a build chose must reproduce the FP32 graph.

The reference is ONNX Runtime FP32 on the exported graph (itself checked against PyTorch when exported);
the candidate is the served engine at the served precision on the served graph (int8: the quantized one).

A graph whose outputs clients see (no probe: query_embedding_encoder):
    fp32 / bf16   every float output row at cosine >= 0.9999 to FP32
    int8          drift reported; the rows' top-10 neighbours (each row against all others, the retrieval
                  the embeddings serve) must overlap FP32's by >= 0.95 on average
A graph behind heads is judged by what clients see through them (its own outputs are reported, not gated):
    every one     the heads' outputs (``EngineModel.parity_probe``): intent probabilities within
                  1e-3 of FP32 and the same argmax on every row; a ranked probe (:class:`Ranked`: duplicate
                  probabilities with their labels) keeps its ROC-AUC within 0.002 of FP32's, what the batch job's
                  users rank and threshold by (its largest probability change and decisions at 0.5 are reported)

Failing, the build stops -- unless the precision was chosen automatically, then that model is built at
its fallback precision (fp32) instead and the report says why. Inputs: the factory's real ones
(``EngineModel.parity_feeds``: tokenized queries and product pairs from the training split, never the held-out
sets the tests and benchmarks use) plus synthetic rows at the longest sequence the model accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from search_build.repository.spec import EngineModel

MIN_COSINE = 0.9999
MIN_TOP10_OVERLAP = 0.95
MAX_PROBE_DIFF = 1e-3
MAX_AUC_DIFF = 0.002
TOP_K = 10
# Config parameter recording EngineModel.parity_scope: what the served precision was gated on (not read at serve time).
PARITY_SCOPE_PARAMETER = "parity_scope"
LONGEST = "longest_sequence"  # the synthetic batch at the model's longest accepted sequence


class ParityGateError(RuntimeError):
    pass


@dataclass(frozen=True)
class Ranked:
    """A probe output judged by the ranking it gives, not its values: scores with the rows' true labels."""

    scores: np.ndarray
    labels: np.ndarray


def needs_gate(model: EngineModel) -> bool:
    return (model.engine, model.precision) != ("onnxruntime", "fp32")


def gate_feeds(model: EngineModel, onnx_path: Path) -> dict[str, dict[str, np.ndarray]]:
    from search_build.export.quantize import synthetic_feeds

    batches = (
        dict(model.parity_feeds())
        if model.parity_feeds is not None
        else {"synthetic": synthetic_feeds(model, onnx_path, batch=32)}
    )
    if model.max_sequence_length:
        batches[LONGEST] = synthetic_feeds(model, onnx_path, batch=2, length=model.max_sequence_length, seed=1)
    return batches


def query_feeds(tokenizer_dir: Path, max_length: int, input_names: tuple[str, ...]):
    """``parity_feeds`` for a BERT encoder: the project's sample music queries, tokenized as served."""

    def feeds() -> dict[str, dict[str, np.ndarray]]:
        from search_backends.tokenization import BatchTokenizer
        from search_tools.sample_queries import MUSIC_QUERIES

        batch = BatchTokenizer(tokenizer_dir, max_length=max_length).encode(list(MUSIC_QUERIES))
        return {"music_queries": {name: getattr(batch, name) for name in input_names}}

    return feeds


def top_k_overlap(reference: np.ndarray, candidate: np.ndarray, k: int = TOP_K) -> float:
    """Mean share of each row's k nearest rows (cosine, itself excluded) that both embeddings agree on."""

    def neighbours(x: np.ndarray) -> np.ndarray:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        sims = x @ x.T
        np.fill_diagonal(sims, -np.inf)
        return np.argsort(-sims, axis=1)[:, :k]

    k = min(k, len(reference) - 1)
    if k < 1:
        return 1.0
    want, got = neighbours(reference), neighbours(candidate)
    return float(np.mean([len(set(w) & set(g)) / k for w, g in zip(want, got)]))


def _compare(stats: dict, want: np.ndarray, got: np.ndarray, *, overlap: bool) -> None:
    w64, g64 = np.asarray(want, np.float64), np.asarray(got, np.float64)
    stats["rows"] = stats.get("rows", 0) + len(w64)
    stats["max_abs"] = max(stats.get("max_abs", 0.0), float(np.abs(w64 - g64).max(initial=0.0)))
    if np.issubdtype(np.asarray(want).dtype, np.floating) and w64.ndim >= 2:
        from search_build.export.quantize import row_cosines

        a, b = w64.reshape(len(w64), -1), g64.reshape(len(g64), -1)
        stats["min_cosine"] = min(stats.get("min_cosine", 1.0), float(row_cosines(a, b).min()))
        if a.shape[1] > 1:
            stats["argmax_agreement"] = min(
                stats.get("argmax_agreement", 1.0), float(np.mean(a.argmax(1) == b.argmax(1)))
            )
        if overlap and len(a) > TOP_K:
            stats["top10_overlap"] = min(stats.get("top10_overlap", 1.0), top_k_overlap(a, b))


def _ranked_stats(parts: list[tuple[Ranked, Ranked]]) -> dict:
    """ROC-AUC over all of a probe's batches together (a per-batch AUC would be too noisy for the 0.002 limit)."""
    from search_build.training.product_eval import roc_auc

    labels = np.concatenate([np.asarray(w.labels).ravel() for w, _ in parts])
    w = np.concatenate([np.asarray(w.scores, np.float64).ravel() for w, _ in parts])
    g = np.concatenate([np.asarray(g.scores, np.float64).ravel() for _, g in parts])
    fp32_auc, served_auc = roc_auc(labels, w), roc_auc(labels, g)
    return {
        "rows": len(w),
        "max_abs": float(np.abs(w - g).max(initial=0.0)),
        "decisions_agree": float(np.mean((w >= 0.5) == (g >= 0.5))),
        "fp32_roc_auc": fp32_auc,
        "roc_auc": served_auc,
        "auc_diff": served_auc - fp32_auc,
    }


# The gate's batches with ONNX Runtime FP32's outputs on them, by batch name: (feeds, outputs by name).
Reference = dict[str, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]


def reference_outputs(model: EngineModel, fp32_onnx: Path, batches: dict | None = None) -> Reference:
    """What every candidate engine and precision of ``model`` is compared with. Computed once per graph: a gate
    that falls back, or a sweep trying several engines, reuses it (it was half of a gate's time). ``batches``:
    :func:`gate_feeds` of the same model and graph, when the caller has them already."""
    from search_backends.graph_engines import OnnxRuntimeEngine

    reference = OnnxRuntimeEngine(fp32_onnx)
    batches = batches if batches is not None else gate_feeds(model, fp32_onnx)
    return {
        batch_name: (feeds, dict(zip(reference.output_names, reference.infer(feeds))))
        for batch_name, feeds in batches.items()
    }


def measure(model: EngineModel, fp32_onnx: Path, served_onnx: Path, reference: Reference | None = None) -> dict:
    """Served engine vs ONNX Runtime FP32 on the gate's batches: per output and per probed output."""
    from search_backends.graph_engines import open_engine

    reference = reference if reference is not None else reference_outputs(model, fp32_onnx)
    candidate = open_engine(model.engine, served_onnx, precision=model.precision)
    outputs: dict[str, dict] = {}
    probed: dict[str, dict] = {}
    ranked: dict[str, list[tuple[Ranked, Ranked]]] = {}
    for batch_name, (feeds, want) in reference.items():
        got = dict(zip(candidate.output_names, candidate.infer(feeds)))
        for name in want:
            _compare(outputs.setdefault(name, {}), want[name], got[name], overlap=batch_name != LONGEST)
        if model.parity_probe is not None and batch_name != LONGEST:
            want_seen, got_seen = model.parity_probe(batch_name, want), model.parity_probe(batch_name, got)
            for name, want_probe in want_seen.items():
                if isinstance(want_probe, Ranked):
                    ranked.setdefault(name, []).append((want_probe, got_seen[name]))
                else:
                    _compare(probed.setdefault(name, {}), want_probe, got_seen[name], overlap=False)
    report = {"engine": model.engine, "precision": candidate.precision, "outputs": outputs, "probed": probed}
    if ranked:
        report["ranked"] = {name: _ranked_stats(parts) for name, parts in ranked.items()}
    return report


def failures(report: dict, precision: str) -> list[str]:
    """What breaks the gate. A model with a probe is judged by what its clients see through it (the probes); its
    raw outputs are then reported, not gated (product_encoder's pooled vector only feeds the heads)."""
    found = []
    judged_by_probes = bool(report.get("probed") or report.get("ranked"))
    for name, stats in report["outputs"].items():
        if "min_cosine" not in stats or judged_by_probes:
            continue
        if precision == "int8":
            if stats.get("top10_overlap", 1.0) < MIN_TOP10_OVERLAP:
                found.append(f"{name}: top-10 overlap {stats['top10_overlap']:.3f} < {MIN_TOP10_OVERLAP}")
        elif stats["min_cosine"] < MIN_COSINE:
            found.append(f"{name}: min cosine {stats['min_cosine']:.6f} < {MIN_COSINE}")
    for name, stats in report.get("probed", {}).items():
        if stats["max_abs"] > MAX_PROBE_DIFF:
            found.append(f"{name}: max |diff| {stats['max_abs']:.2e} > {MAX_PROBE_DIFF}")
        if stats.get("argmax_agreement", 1.0) < 1.0:
            found.append(f"{name}: argmax agrees on {stats['argmax_agreement']:.1%} of rows")
    for name, stats in report.get("ranked", {}).items():
        if abs(stats["auc_diff"]) > MAX_AUC_DIFF:
            found.append(
                f"{name}: ROC-AUC {stats['roc_auc']:.4f} vs FP32 {stats['fp32_roc_auc']:.4f} (|diff| > {MAX_AUC_DIFF})"
            )
    return found


def fallen_back(model: EngineModel) -> EngineModel:
    """``model`` as built when its chosen precision failed the gate: at its fallback precision, with none left."""
    from dataclasses import replace

    return replace(model, precision=model.fallback_precision, fallback_precision=None)


def check_parity(
    model: EngineModel, fp32_onnx: Path, served_onnx: Path, reference: Reference | None = None
) -> tuple[EngineModel, dict]:
    """Run the gate. Returns the model as it will be served (its fallback precision when the chosen one failed
    and was chosen automatically) and the report; raises :class:`ParityGateError` otherwise. ``reference``:
    :func:`reference_outputs` of the same model and FP32 graph, when the caller has it already."""
    reference = reference if reference is not None else reference_outputs(model, fp32_onnx)
    report = measure(model, fp32_onnx, served_onnx, reference)
    found = failures(report, model.precision)
    if found and model.fallback_precision and model.fallback_precision != model.precision:
        served, report = check_parity(fallen_back(model), fp32_onnx, served_onnx, reference)
        report["fell_back"] = {"from": model.precision, "because": found}
        return served, report
    report["passed"] = not found
    if found:
        raise ParityGateError(
            f"{model.name} on {model.engine} {model.precision} fails the parity gate against "
            f"FP32: {'; '.join(found)} (build with --precision fp32 or --engine onnxruntime)"
        )
    return model, report


def summary(name: str, report: dict) -> str:
    parts = []
    for output, s in report["outputs"].items():
        text = f"{output} max|diff| {s['max_abs']:.2e}"
        if "min_cosine" in s:
            text += f", min cosine {s['min_cosine']:.6f}"
        if "top10_overlap" in s:
            text += f", top-10 overlap {s['top10_overlap']:.3f}"
        parts.append(text)
    for probed, s in report.get("probed", {}).items():
        parts.append(f"{probed} max|diff| {s['max_abs']:.2e}")
    for ranked, s in report.get("ranked", {}).items():
        parts.append(
            f"{ranked} ROC-AUC {s['roc_auc']:.4f} (FP32 {s['fp32_roc_auc']:.4f}), max|diff| {s['max_abs']:.2e}, "
            f"decisions at 0.5 agree on {s['decisions_agree']:.1%}"
        )
    line = f"parity {name} ({report['engine']} {report['precision']}): " + "; ".join(parts)
    if "fell_back" in report:
        line += (
            f" -- {report['fell_back']['from']} failed ({'; '.join(report['fell_back']['because'])}), built "
            f"{report['precision']}"
        )
    return line
