"""Int8 engines for CPU targets: ONNX Runtime dynamic quantization and how much it changes the outputs.

Dynamic quantization stores MatMul weights as int8 (per output channel) and quantizes activations
on the fly, so it needs no calibration data. On all-MiniLM-L6-v2 it keeps the embeddings of the
project's sample queries at cosine >= 0.99 of FP32 (MatMul-only, per-channel; per-tensor weights
fell to ~0.94) with a graph of 59 MB instead of 91 MB (the FP32 embedding table is most of the rest).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from search_build.repository.artifacts import cache_root, place
from search_build.repository.spec import EngineModel

# Bump when the quantization recipe changes so cached int8 graphs are rebuilt.
RECIPE = "dyn-int8-matmul-perchannel-v1"


def quantize_int8(src: str | Path, dest: str | Path) -> Path:
    """Write the dynamically int8-quantized copy of ``src`` to ``dest``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"])
    os.replace(tmp, dest)
    return dest


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine between matching rows of two outputs (each row flattened)."""
    a, b = np.asarray(a, np.float64).reshape(len(a), -1), np.asarray(b, np.float64).reshape(len(b), -1)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def output_drift(
    reference: str | Path, candidate: str | Path, feeds: Mapping[str, np.ndarray]
) -> dict[str, dict[str, float]]:
    """Per output: max |diff|, max relative diff, and (for float outputs) the lowest row cosine."""
    import onnxruntime as ort

    ref = ort.InferenceSession(str(reference), providers=["CPUExecutionProvider"])
    cand = ort.InferenceSession(str(candidate), providers=["CPUExecutionProvider"])
    names = [o.name for o in ref.get_outputs()]
    want = ref.run(names, dict(feeds))
    got = cand.run(names, dict(feeds))
    report = {}
    for name, w, g in zip(names, want, got):
        w64, g64 = np.asarray(w, np.float64), np.asarray(g, np.float64)
        diff = np.abs(w64 - g64)
        stats = {
            "max_abs": float(diff.max(initial=0.0)),
            "max_rel": float((diff / np.maximum(np.abs(w64), 1e-6)).max(initial=0.0)),
        }
        if np.issubdtype(np.asarray(w).dtype, np.floating) and w64.ndim >= 2:
            stats["min_cosine"] = float(row_cosines(w64, g64).min())
        report[name] = stats
    return report


def synthetic_feeds(
    model: EngineModel,
    onnx_path: str | Path,
    *,
    batch: int = 8,
    length: int = 16,
    seed: int = 0,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
) -> dict[str, np.ndarray]:
    """Inputs for a drift check when no real ones are at hand.

    Integer inputs that index a table in the graph (a ``Gather`` on an initializer: token ids,
    token type ids, ...) get valid indices of that table; other integer inputs get small ids;
    pad/mask-like inputs (a name containing "mask") get ones so nothing is masked out; float
    inputs get unit normals. Variable dims take ``length``; ``shapes`` (full shapes including the
    batch axis, e.g. one of the spec's optimization-profile shapes) overrides per input.
    """
    import onnx
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    bounds = index_bounds(onnx.load(str(onnx_path), load_external_data=False).graph)
    dims = {t.name: t.dims for t in model.inputs}
    shapes = shapes or {}
    feeds = {}
    for i in session.get_inputs():
        shape = tuple(shapes.get(i.name) or (batch, *[length if d < 0 else d for d in dims.get(i.name, ())]))
        if "int" in i.type:
            dtype = np.int32 if "int32" in i.type else np.int64
            if "mask" in i.name.lower():
                feeds[i.name] = np.ones(shape, dtype)
            elif i.name in bounds:
                feeds[i.name] = rng.integers(0, bounds[i.name], shape).astype(dtype)
            else:
                feeds[i.name] = rng.integers(1, 1000, shape).astype(dtype)
        elif "bool" in i.type:
            feeds[i.name] = np.ones(shape, np.bool_)
        else:
            feeds[i.name] = rng.standard_normal(shape).astype(np.float16 if "float16" in i.type else np.float32)
    return feeds


# Ops that pass index values through unchanged (only their type or layout changes).
_INDEX_PASSTHROUGH = {"Cast", "Identity", "Unsqueeze", "Squeeze", "Reshape", "Flatten", "Expand", "Slice"}


def index_bounds(graph) -> dict[str, int]:
    """Graph input -> number of rows of the smallest constant table it indexes through ``Gather``.

    Follows the input through value-preserving ops (Cast, Reshape, ...) to ``Gather`` nodes whose
    data is an initializer or Constant; inputs that index no such table are left out.
    """
    from onnx import numpy_helper

    tables = {t.name: tuple(t.dims) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    tables[node.output[0]] = tuple(numpy_helper.to_array(attr.t).shape)
    consumers: dict[str, list] = {}
    for node in graph.node:
        for position, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, position))
    bounds = {}
    for value in graph.input:
        found, seen, todo = [], set(), [value.name]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            for node, position in consumers.get(name, ()):
                if node.op_type in _INDEX_PASSTHROUGH and position == 0:
                    todo.extend(node.output)
                elif node.op_type == "Gather" and position == 1 and node.input[0] in tables:
                    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
                    shape = tables[node.input[0]]
                    if shape:
                        found.append(shape[axis % len(shape)])
        if found:
            bounds[value.name] = min(found)
    return bounds


def int8_transform(report: dict | None = None) -> Callable[[EngineModel, Path], Path]:
    """An ``onnx_transform`` for :func:`write_repository`: swap each engine's graph for its int8 copy.

    Quantized graphs are cached next to the exports (keyed by the export's cache key and
    :data:`RECIPE`); the drift against FP32 on :func:`synthetic_feeds` goes into ``report``.
    """

    def transform(model: EngineModel, onnx_path: Path) -> Path:
        if not model.follows_build_engine:
            return onnx_path  # graphs that must stay FP32 (engine_choice)
        key = f"{model.onnx.cache_key}-{RECIPE}" if model.onnx.cache_key else None
        cached = cache_root() / key / "model.onnx" if key else onnx_path.with_name("model.int8.onnx")
        if not cached.exists():
            quantize_int8(onnx_path, cached)
        if report is not None:
            report[model.name] = output_drift(onnx_path, cached, synthetic_feeds(model, onnx_path))
        place(cached, onnx_path)  # replaces the hard link to the FP32 export, never writes through it
        if key is None:
            cached.unlink()
        return onnx_path

    return transform


def write_report(report: dict, path: Path) -> Path:
    path.write_text(json.dumps({"recipe": RECIPE, "drift_vs_fp32": report}, indent=2) + "\n")
    return path
