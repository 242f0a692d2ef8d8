"""Parity-gate verdicts remembered by content, so writing the same repository again does not re-run the gate.

A verdict (the gate's report, and the precision it let through) is stored under a key over everything the gate's
outcome depends on:
  * the FP32 reference graph and the served graph (their bytes);
  * the model's engine, precision, fallback precision and parity scope;
  * the gate's inputs: the feeds themselves (names, dtypes, shapes, bytes), and what the probe makes of a seeded
    synthetic output per batch (which captures the heads and labels behind it);
  * the code that judges and runs it (engine_parity, the engines, the comparisons), the engine libraries'
    versions and this CPU's identity (bf16 kernels differ between CPUs).
A gate that fails is not stored: a failing build runs the gate again and raises again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from search_build.export import engine_parity
from search_build.repository.artifacts import cache_root, file_sha256
from search_build.repository.spec import EngineModel

# Bump when a stored report's meaning changes in a way the hashed sources below would not show.
VERDICT_FORMAT = "1"
PROBE_ROWS = 4


def verdicts_dir() -> Path:
    return cache_root() / "parity_verdicts"


@lru_cache(maxsize=1)
def _environment() -> str:
    """Libraries and CPU the verdict was measured with, and the code that measured it."""
    import importlib.metadata as md

    from search_backends import graph_engines
    from search_build.export import quantize
    from search_build.training import product_eval

    parts = [VERDICT_FORMAT]
    for dist in ("openvino", "onnxruntime", "numpy"):
        try:
            parts.append(f"{dist}={md.version(dist)}")
        except md.PackageNotFoundError:
            parts.append(f"{dist}=none")
    if graph_engines.openvino_available():
        import openvino as ov

        core = ov.Core()
        parts += [str(core.get_property("CPU", key)) for key in ("FULL_DEVICE_NAME", "OPTIMIZATION_CAPABILITIES")]
    for module in (engine_parity, graph_engines, quantize, product_eval):
        parts.append(hashlib.sha256(Path(module.__file__).read_bytes()).hexdigest())
    return "|".join(parts)


def _hash_arrays(h, arrays: dict) -> None:
    for name in sorted(arrays):
        value = arrays[name]
        if isinstance(value, engine_parity.Ranked):
            _hash_arrays(h, {f"{name}.scores": value.scores, f"{name}.labels": value.labels})
            continue
        value = np.ascontiguousarray(value)
        h.update(f"{name}|{value.dtype.str}|{value.shape}".encode())
        h.update(value.tobytes())


def _probe_digest(model: EngineModel, batch_names: list[str], h) -> None:
    """What the probe answers for seeded outputs of the graph's shapes, per batch: its heads and labels."""
    if model.parity_probe is None:
        return
    rng = np.random.default_rng(0)
    for batch_name in batch_names:
        if batch_name == engine_parity.LONGEST:
            continue
        outputs = {
            spec.name: rng.standard_normal((PROBE_ROWS, *[d if d > 0 else 8 for d in spec.dims])).astype(np.float32)
            for spec in model.outputs
        }
        h.update(f"probe|{batch_name}".encode())
        _hash_arrays(h, model.parity_probe(batch_name, outputs))


def verdict_key(model: EngineModel, fp32_onnx: Path, served_onnx: Path, feeds: dict) -> str:
    h = hashlib.sha256(_environment().encode())
    h.update(
        "|".join(
            [model.name, model.engine, model.precision, str(model.fallback_precision), ",".join(model.parity_scope)]
        ).encode()
    )
    h.update(file_sha256(fp32_onnx).encode())
    h.update(file_sha256(served_onnx).encode())
    for batch_name in sorted(feeds):
        h.update(f"feeds|{batch_name}".encode())
        _hash_arrays(h, feeds[batch_name])
    _probe_digest(model, sorted(feeds), h)
    return h.hexdigest()


def check_parity_remembered(model: EngineModel, fp32_onnx: Path, served_onnx: Path) -> tuple[EngineModel, dict]:
    """:func:`engine_parity.check_parity`, answered from a stored verdict when every input is the same."""
    feeds = engine_parity.gate_feeds(model, fp32_onnx)
    path = verdicts_dir() / f"{verdict_key(model, fp32_onnx, served_onnx, feeds)}.json"
    if path.is_file():
        report = json.loads(path.read_text(encoding="utf-8"))
        return (engine_parity.fallen_back(model) if "fell_back" in report else model), report
    reference = engine_parity.reference_outputs(model, fp32_onnx, feeds)
    served, report = engine_parity.check_parity(model, fp32_onnx, served_onnx, reference)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False, encoding="utf-8") as f:
        json.dump(report, f)
    os.replace(f.name, path)  # atomic: parallel builds never read half a verdict
    return served, report
