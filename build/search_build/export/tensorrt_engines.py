"""TensorRT engines for the ``triton-gpu`` target: ONNX graph -> serialized ``model.plan``.

Three steps, each usable on its own:
  * :func:`int64_inputs_to_int32` rewrites the graph so its index tensors are int32 at the
    boundary (the triton-gpu configs declare INT32; TensorRT has no int64 bindings on older
    versions and int32 halves the copy), casting back to int64 inside the graph;
  * :func:`profile_shapes` turns the spec's optimization profiles into checked
    (min, opt, max) shapes per input;
  * :func:`build_engine` runs the TensorRT builder (FP32, FP16 or BF16).

``engine_builder_for(precision)`` is what ``searchbar build --target triton-gpu`` plugs into
:func:`search_build.repository.writer.write_repository`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import onnx
from onnx import TensorProto, helper

from search_build.repository.spec import EngineModel

TENSORRT_PRECISIONS = ("fp32", "fp16", "bf16")
DEFAULT_WORKSPACE_BYTES = 4 << 30
INSTALL_HINT = (
    "TensorRT is needed to build triton-gpu engines: on a machine with an NVIDIA GPU and CUDA run "
    "`pip install tensorrt` (or use the TensorRT inside nvcr.io/nvidia/tritonserver:24.10-py3 / "
    "nvcr.io/nvidia/tensorrt:24.10-py3), then rebuild. No engine is written without it."
)


class TensorRTUnavailable(RuntimeError):
    """Raised when the TensorRT builder cannot be imported or cannot run here."""


# ---------------------------------------------------------------------------------------- ONNX surgery


def int64_inputs_to_int32(src: str | Path, dest: str | Path, *, keep_outputs: list[str] | None = None) -> list[str]:
    """Make every int64 graph input and output int32; returns the names changed.

    Inputs: the graph input becomes int32 and a ``Cast(to=int64)`` feeds the original consumers,
    so the graph body is untouched. Outputs: the int64 value is cast to int32 under the output's name.
    ``keep_outputs`` drops every other graph output (an engine output the config does not declare
    would be computed for nothing, and Triton's TensorRT backend wants every binding configured).
    """
    model = onnx.load(str(src))
    graph = model.graph
    if keep_outputs is not None:
        missing = set(keep_outputs) - {v.name for v in graph.output}
        if missing:
            raise ValueError(f"{src}: graph has no outputs {sorted(missing)}")
        kept_outputs = [v for v in graph.output if v.name in keep_outputs]
        del graph.output[:]
        graph.output.extend(kept_outputs)
    changed: list[str] = []
    casts: list[onnx.NodeProto] = []
    for value in graph.input:
        if value.type.tensor_type.elem_type != TensorProto.INT64:
            continue
        inner = _unique_name(graph, f"{value.name}__int64")
        _rename_uses(graph, value.name, inner)
        value.type.tensor_type.elem_type = TensorProto.INT32
        casts.append(
            helper.make_node("Cast", [value.name], [inner], to=TensorProto.INT64, name=f"{value.name}__to_int64")
        )
        changed.append(value.name)
    for value in graph.output:
        if value.type.tensor_type.elem_type != TensorProto.INT64:
            continue
        inner = _unique_name(graph, f"{value.name}__int64")
        _rename_producers(graph, value.name, inner)
        _rename_uses(graph, value.name, inner)
        value.type.tensor_type.elem_type = TensorProto.INT32
        graph.node.append(
            helper.make_node("Cast", [inner], [value.name], to=TensorProto.INT32, name=f"{value.name}__to_int32")
        )
        changed.append(value.name)
    # Casts go first so the node list stays topologically sorted.
    for i, node in enumerate(casts):
        graph.node.insert(i, node)
    # Shape inference of the old value_info would still say int64 for renamed tensors.
    kept = [v for v in graph.value_info if v.name not in changed]
    del graph.value_info[:]
    graph.value_info.extend(kept)
    onnx.checker.check_model(model)
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dest))
    return changed


def _unique_name(graph: onnx.GraphProto, base: str) -> str:
    names = {n for node in graph.node for n in [*node.input, *node.output]}
    name, i = base, 0
    while name in names:
        i += 1
        name = f"{base}_{i}"
    return name


def _rename_uses(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Point every consumer of ``old`` at ``new``, including nodes of nested subgraphs (If/Loop bodies)."""
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for attr in node.attribute:
            for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
                if not any(v.name == old for v in [*sub.input, *sub.initializer]):  # not shadowed
                    _rename_uses(sub, old, new)


def _rename_producers(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
    if any(value.name == old for value in graph.input):
        raise ValueError(f"graph output {old} is also a graph input; export it through a node")


# ---------------------------------------------------------------------------------------- profiles

Shape = tuple[int, ...]


def profile_shapes(model: EngineModel) -> list[dict[str, tuple[Shape, Shape, Shape]]]:
    """The spec's optimization profiles as ``{input: (min, opt, max)}``, checked against the spec.

    Each profile must cover every input with rank = 1 (batch) + len(dims), keep fixed dims fixed,
    satisfy min <= opt <= max (min >= 1 on the batch axis, >= 0 on others: an empty
    KV cache is a valid shape) and stay within the model's max_batch_size (the batch Triton forms).
    Without profiles, a model whose dims are all fixed gets one profile spanning batch 1..max.
    """
    max_batch = model.batching.max_batch_size
    profiles = model.profiles
    if not profiles:
        if any(d < 0 for t in model.inputs for d in t.dims):
            raise ValueError(f"{model.name}: variable-length inputs need optimization profiles in the spec")
        return [
            {
                t.name: ((1, *t.dims), (max(1, max_batch // 2), *t.dims), (max(1, max_batch), *t.dims))
                for t in model.inputs
            }
        ]
    result = []
    for index, profile in enumerate(profiles):
        shapes: dict[str, tuple[Shape, Shape, Shape]] = {}
        for tensor in model.inputs:
            where = f"{model.name} profile {index} input {tensor.name}"
            try:
                lo, mid, hi = (tuple(p[tensor.name]) for p in (profile.min, profile.opt, profile.max))
            except KeyError:
                raise ValueError(f"{where}: missing from min/opt/max") from None
            rank = len(tensor.dims) + (1 if max_batch > 0 else 0)
            if not len(lo) == len(mid) == len(hi) == rank:
                raise ValueError(f"{where}: shapes {lo} {mid} {hi} do not have rank {rank}")
            # The batch axis needs >= 1 row; other axes may be empty (e.g. a KV cache before the first
            # decoding step has past length 0; TensorRT accepts zero-length dimensions in profiles).
            floors = ((1,) if max_batch > 0 else ()) + (0,) * len(tensor.dims)
            if any(not f <= a <= b <= c for f, a, b, c in zip(floors, lo, mid, hi)):
                raise ValueError(
                    f"{where}: need min <= opt <= max with min >= 1 on the batch axis and >= 0 "
                    f"elsewhere, got {lo} {mid} {hi}"
                )
            fixed = tensor.dims if max_batch <= 0 else (None, *tensor.dims)
            for axis, dim in enumerate(fixed):
                if dim is not None and dim >= 0 and not lo[axis] == hi[axis] == dim:
                    raise ValueError(
                        f"{where}: axis {axis} is fixed at {dim} but the profile spans {lo[axis]}..{hi[axis]}"
                    )
            if max_batch > 0 and hi[0] > max_batch:
                raise ValueError(f"{where}: max batch {hi[0]} exceeds max_batch_size {max_batch}")
            shapes[tensor.name] = (lo, mid, hi)
        extra = set(profile.min) - {t.name for t in model.inputs}
        if extra:
            raise ValueError(f"{model.name} profile {index}: unknown inputs {sorted(extra)}")
        result.append(shapes)
    return result


# ---------------------------------------------------------------------------------------- builder


def import_tensorrt():
    try:
        import tensorrt as trt  # noqa: PLC0415 - optional, GPU machines only
    except ImportError as exc:
        raise TensorRTUnavailable(f"{INSTALL_HINT} (import tensorrt failed: {exc})") from exc
    return trt


def _major(version: str) -> int:
    return int(version.split(".")[0])


def _supports_bf16(trt) -> tuple[bool, str]:
    if _major(trt.__version__) < 9 or not hasattr(trt.BuilderFlag, "BF16"):
        return False, f"BF16 needs TensorRT >= 9 (found {trt.__version__})"
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.get_device_capability()[0] < 8:
            return (
                False,
                f"BF16 needs compute capability >= 8.0 (Ampere); this GPU is {torch.cuda.get_device_capability()}",
            )
    except ImportError:
        pass  # TensorRT itself rejects the flag on hardware without BF16
    return True, ""


def build_engine(
    model: EngineModel,
    onnx_path: str | Path,
    plan_path: str | Path,
    *,
    precision: str = "fp16",
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    trt=None,
) -> Path:
    """Build a TensorRT plan from ``onnx_path`` (int64 boundaries rewritten to int32 first)."""
    if precision not in TENSORRT_PRECISIONS:
        raise ValueError(f"TensorRT precision must be one of {TENSORRT_PRECISIONS}, got {precision!r}")
    trt = trt or import_tensorrt()
    plan_path = Path(plan_path)
    int32_onnx = plan_path.with_name("model.int32.onnx")
    int64_inputs_to_int32(onnx_path, int32_onnx, keep_outputs=[t.name for t in model.outputs])
    shapes = profile_shapes(model)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # TensorRT 10 networks are always explicit-batch; older versions need the flag.
    flags = 0 if _major(trt.__version__) >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(int32_onnx)):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{model.name}: TensorRT could not parse {int32_onnx}:\n{errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if precision == "fp16":
        if not builder.platform_has_fast_fp16:
            raise TensorRTUnavailable(f"{model.name}: this GPU has no fast FP16; build with --precision fp32")
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "bf16":
        ok, why = _supports_bf16(trt)
        if not ok:
            raise TensorRTUnavailable(f"{model.name}: {why}; build with --precision fp16 or fp32")
        config.set_flag(trt.BuilderFlag.BF16)
    for profile_shapes_ in shapes:
        profile = builder.create_optimization_profile()
        for name, (lo, mid, hi) in profile_shapes_.items():
            profile.set_shape(name, lo, mid, hi)
        config.add_optimization_profile(profile)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"{model.name}: TensorRT engine build failed (see the TensorRT log above)")
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = plan_path.with_name(plan_path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(bytes(serialized))
    os.replace(tmp, plan_path)
    int32_onnx.unlink(missing_ok=True)
    return plan_path


def engine_builder_for(
    precision: str = "fp16", *, workspace_bytes: int = DEFAULT_WORKSPACE_BYTES
) -> Callable[[EngineModel, Path, Path], Path]:
    """The ``(model, onnx_path, plan_path)`` callable for :func:`write_repository`.

    Checks for TensorRT at once, so a machine without it fails before any export runs.
    """
    if precision not in TENSORRT_PRECISIONS:
        raise ValueError(
            f"--precision {precision} is not a TensorRT precision; choose from {TENSORRT_PRECISIONS} "
            "(int8 is ONNX Runtime dynamic quantization for the local and triton-cpu targets)"
        )
    trt = import_tensorrt()
    if precision == "bf16":
        ok, why = _supports_bf16(trt)
        if not ok:
            raise TensorRTUnavailable(why)

    def build(model: EngineModel, onnx_path: Path, plan_path: Path) -> Path:
        return build_engine(model, onnx_path, plan_path, precision=precision, workspace_bytes=workspace_bytes, trt=trt)

    return build
