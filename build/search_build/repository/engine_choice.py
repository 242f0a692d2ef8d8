"""Which engine and precision a build gives its encoder graphs, per target.

    triton-gpu           TensorRT plans at the build's precision (fp32 unless asked).
    local / triton-cpu   OpenVINO (the local runner, or Triton's openvino backend) at bf16 where the CPU has
                         bf16 kernels (AMX / AVX512_BF16), fp32 elsewhere; int8 runs on ONNX Runtime's
                         dynamically quantized graph (OpenVINO ran that graph at 0.45x ONNX Runtime).
                         ONNX Runtime stays selectable (``--engine onnxruntime``) at fp32 or int8.

Every choice other than plain ONNX Runtime FP32 passes the build-time parity gate
(:mod:`search_build.export.engine_parity`) before the repository is written.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from search_backends.graph_engines import (
    CPU_ENGINES,
    ENGINE_ONNXRUNTIME,
    ENGINE_OPENVINO,
    ENGINE_PRECISIONS,
    cpu_supports_bf16,
    openvino_available,
)

from search_build.repository.spec import EngineModel, Pipeline, Target

AUTO = "auto"
ENGINE_TENSORRT = "tensorrt"
ENGINE_CHOICES = (AUTO, *CPU_ENGINES)
PRECISION_CHOICES = (AUTO, "fp32", "fp16", "bf16", "int8")


class EngineChoiceError(ValueError):
    pass


@dataclass(frozen=True)
class EngineChoice:
    engine: str
    precision: str
    notes: tuple[str, ...] = ()  # what was decided for the user (fallbacks), printed by the build
    auto_precision: bool = False  # chosen, not asked: a model failing its parity gate falls back to fp32


def choose_engine(target: Target, engine: str = AUTO, precision: str = AUTO) -> EngineChoice:
    if engine not in (*ENGINE_CHOICES, ENGINE_TENSORRT):
        raise EngineChoiceError(f"engine must be one of {', '.join(ENGINE_CHOICES)}, got {engine!r}")
    if precision not in PRECISION_CHOICES:
        raise EngineChoiceError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {precision!r}")
    if target == "triton-gpu":
        if engine not in (AUTO, ENGINE_TENSORRT):
            raise EngineChoiceError(f"--engine {engine} is a CPU engine; the triton-gpu target builds TensorRT plans")
        return EngineChoice(ENGINE_TENSORRT, "fp32" if precision == AUTO else precision)
    if precision == "fp16":
        raise EngineChoiceError(
            f"--precision fp16 needs TensorRT: use it with --target triton-gpu "
            f"(the {target} target takes fp32, bf16 or int8)"
        )
    notes: list[str] = []
    if engine == AUTO:
        if precision == "int8":
            engine = ENGINE_ONNXRUNTIME
        elif openvino_available():
            engine = ENGINE_OPENVINO
        else:
            engine = ENGINE_ONNXRUNTIME
            notes.append("openvino is not installed: encoders run on ONNX Runtime FP32")
    auto_precision = precision == AUTO
    if precision == AUTO:
        precision = "bf16" if engine == ENGINE_OPENVINO and cpu_supports_bf16() else "fp32"
        if engine == ENGINE_OPENVINO and precision == "fp32":
            notes.append("this CPU has no bf16 kernels (AMX / AVX512_BF16): OpenVINO runs fp32")
    elif precision == "bf16" and engine == ENGINE_OPENVINO and not cpu_supports_bf16():
        notes.append("bf16 asked, but this CPU has no bf16 kernels (AMX / AVX512_BF16): building fp32 instead")
        precision = "fp32"
    if engine == ENGINE_OPENVINO and not openvino_available():
        raise EngineChoiceError("--engine openvino needs the openvino package (pip install openvino)")
    if precision not in ENGINE_PRECISIONS[engine]:
        hint = {
            "bf16": "bf16 on CPU runs on OpenVINO: use --engine openvino",
            "int8": "int8 on CPU runs on ONNX Runtime's quantized graph: use --engine onnxruntime",
        }[precision]
        raise EngineChoiceError(f"--engine {engine} does not run {precision}: {hint}")
    return EngineChoice(engine, precision, tuple(notes), auto_precision and precision != "fp32")


def with_engine(pipeline: Pipeline, choice: EngineChoice) -> Pipeline:
    """The pipeline with every encoder graph given the chosen CPU engine and precision."""
    if choice.engine not in CPU_ENGINES:
        return pipeline  # TensorRT: the engine builder compiles every graph at the build's precision
    fallback = "fp32" if choice.auto_precision else None
    return replace(
        pipeline,
        models=tuple(
            replace(m, engine=choice.engine, precision=choice.precision, fallback_precision=fallback)
            if isinstance(m, EngineModel) and m.follows_build_engine
            else m
            for m in pipeline.models
        ),
    )
