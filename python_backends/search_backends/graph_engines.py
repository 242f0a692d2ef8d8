"""Engines that run one exported ONNX graph in process: ONNX Runtime or OpenVINO, at a chosen precision.

Both expose the same small surface (input/output names, numpy dtypes, ``infer(feeds) -> outputs``) so the
batch runner, the in-process product models and the benchmarks do not care which one they hold.

Measured on this project's 2-core Xeon (AVX-512, AMX), all-MiniLM-L6-v2, batch 32 of music queries:
ONNX Runtime FP32 822 rows/s, OpenVINO FP32 1,109, OpenVINO bf16 2,015 (min cosine 0.99998 to FP32).
ONNX Runtime's dynamically quantized int8 graph runs 1,507 rows/s there but only 676 in OpenVINO, so int8
stays on ONNX Runtime.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Protocol, Sequence

import numpy as np

ENGINE_ONNXRUNTIME, ENGINE_OPENVINO = "onnxruntime", "openvino"
CPU_ENGINES = (ENGINE_OPENVINO, ENGINE_ONNXRUNTIME)
# What each engine can run: int8 graphs are quantized before serving (search_build.export.quantize), bf16 is a
# compile-time hint of OpenVINO (AMX / AVX512_BF16 kernels).
ENGINE_PRECISIONS = {ENGINE_ONNXRUNTIME: ("fp32", "int8"), ENGINE_OPENVINO: ("fp32", "bf16")}
_OPENVINO_PRECISION = {"fp32": "f32", "bf16": "bf16"}
# Config parameters of the local target's engine models (written by search_build.repository.configs, read by the runner).
ENGINE_PARAMETER, PRECISION_PARAMETER, GRAPH_FILE_PARAMETER = "engine", "precision", "onnx_file"
GRAPH_FILE = "model.onnx"  # an engine model's graph in its version folder (the default of GRAPH_FILE_PARAMETER)
THREADS_PARAMETER = "intra_op_threads"  # engine threads per instance; 0: the cores shared between instances

log = logging.getLogger(__name__)


class GraphEngine(Protocol):
    engine: str
    precision: str  # what actually runs (bf16 asked on a CPU without it runs fp32)
    input_names: list[str]
    input_dtypes: dict[str, np.dtype]
    output_names: list[str]

    def infer(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]: ...


class OnnxRuntimeEngine:
    engine = ENGINE_ONNXRUNTIME

    def __init__(
        self, model_path: str | Path, threads: int = 0, precision: str = "fp32", providers: Sequence[str] | None = None
    ):
        from .onnx_runner import ORT_TO_NUMPY, make_session

        check_engine_precision(ENGINE_ONNXRUNTIME, precision)
        self.precision = precision  # an int8 graph is already quantized: the session runs what it is given
        self.session = make_session(model_path, intra_op_threads=threads, providers=providers)
        self.input_names = [i.name for i in self.session.get_inputs()]
        # Inputs of other types are fed as given (BatchRunner reads a missing entry as "no conversion").
        self.input_dtypes = {
            i.name: np.dtype(ORT_TO_NUMPY[i.type]) for i in self.session.get_inputs() if i.type in ORT_TO_NUMPY
        }
        self.output_names = [o.name for o in self.session.get_outputs()]

    def infer(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(self.output_names, dict(feeds))


@lru_cache(maxsize=1)
def cpu_supports_bf16() -> bool:
    """Whether OpenVINO has bf16 kernels on this CPU (AMX or AVX512_BF16)."""
    try:
        import openvino as ov
    except ImportError:
        return False
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


class OpenVinoEngine:
    engine = ENGINE_OPENVINO

    def __init__(self, model_path: str | Path, threads: int = 0, precision: str = "fp32"):
        import openvino as ov

        check_engine_precision(ENGINE_OPENVINO, precision)
        if precision == "bf16" and not cpu_supports_bf16():
            log.warning("bf16 asked but this CPU has no bf16 kernels (no AMX / AVX512_BF16): running fp32")
            precision = "fp32"
        self.precision = precision
        core = ov.Core()
        properties = {
            "INFERENCE_PRECISION_HINT": _OPENVINO_PRECISION[precision],
            # One stream, latency hint: one request at a time per model instance (Triton batches for us);
            # no pinning, since the tokenizer stubs and the server share these cores.
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            "ENABLE_CPU_PINNING": False,
        }
        if threads > 0:
            properties["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(core.read_model(str(model_path)), "CPU", properties)
        self.request = self.compiled.create_infer_request()
        self.input_names = [p.get_any_name() for p in self.compiled.inputs]
        self.input_dtypes = {p.get_any_name(): np.dtype(p.get_element_type().to_dtype()) for p in self.compiled.inputs}
        self.output_names = [p.get_any_name() for p in self.compiled.outputs]

    def infer(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        self.request.infer({name: np.ascontiguousarray(feeds[name]) for name in self.input_names})
        # Copies: the request's output buffers are reused by the next call.
        return [self.request.get_output_tensor(i).data.copy() for i in range(len(self.output_names))]


def check_engine_precision(engine: str, precision: str) -> None:
    if engine not in ENGINE_PRECISIONS:
        raise ValueError(f"engine must be one of {', '.join(ENGINE_PRECISIONS)}, got {engine!r}")
    if precision not in ENGINE_PRECISIONS[engine]:
        raise ValueError(f"engine {engine} runs precision {', '.join(ENGINE_PRECISIONS[engine])}, got {precision!r}")


def open_engine(engine: str, model_path: str | Path, *, threads: int = 0, precision: str = "fp32") -> GraphEngine:
    check_engine_precision(engine, precision)
    if engine == ENGINE_OPENVINO:
        return OpenVinoEngine(model_path, threads, precision)
    return OnnxRuntimeEngine(model_path, threads, precision)


def engine_from_parameters(folder: str | Path, params: Mapping[str, str], *, threads: int = 0) -> GraphEngine:
    """The engine a served model's config parameters name (engine, graph file in its version ``folder``,
    precision): the graph runner stub, the fused encoder stub and the in-process search bar all open it here."""
    return open_engine(
        params.get(ENGINE_PARAMETER, ENGINE_ONNXRUNTIME),
        Path(folder) / params.get(GRAPH_FILE_PARAMETER, GRAPH_FILE),
        threads=threads,
        precision=params.get(PRECISION_PARAMETER, "fp32"),
    )
