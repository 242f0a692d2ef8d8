"""Render pipeline specs into Triton ``ModelConfig`` protobufs (Triton's own schema) and pbtxt."""

from __future__ import annotations

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from search_backends.admission import SHED_WAIT_PARAMETER, SHEDDING_ADAPTERS
from search_backends.contracts.query_embedding import TEXT_INPUT_PARAMETER, TOKENIZER_DIR_PARAMETER
from search_backends.graph_engines import (
    ENGINE_OPENVINO,
    ENGINE_PARAMETER,
    GRAPH_FILE,
    GRAPH_FILE_PARAMETER,
    PRECISION_PARAMETER,
    THREADS_PARAMETER,
)

from search_build.export.engine_parity import PARITY_SCOPE_PARAMETER
from search_build.repository.spec import (
    Batching,
    EngineModel,
    Ensemble,
    Model,
    PythonModel,
    TensorSpec,
    Target,
    TARGETS,
)

ENGINE_FILES = {"local": GRAPH_FILE, "triton-cpu": GRAPH_FILE, "triton-gpu": "model.plan"}
OPENVINO_IR_FILE = "model.xml"  # + model.bin: what Triton's openvino backend reads


def _dtype(name: str) -> int:
    return mc.DataType.Value(f"TYPE_{name}")


def _tensor(spec: TensorSpec, cls, *, ragged: bool = False, target: Target = "local"):
    # TensorRT engines take int32 indices, so on triton-gpu every int64 tensor of the pipeline
    # becomes int32; Python models read their dtypes from the config and follow.
    if target == "triton-gpu" and spec.dtype == "INT64":
        spec = TensorSpec(spec.name, "INT32", spec.dims, spec.optional)
    t = cls(name=spec.name, data_type=_dtype(spec.dtype), dims=list(spec.dims))
    if spec.optional and cls is mc.ModelInput:
        t.optional = True
    if ragged and cls is mc.ModelInput:
        t.allow_ragged_batch = True
    return t


def _apply_batching(cfg: mc.ModelConfig, b: Batching, *, kind: int) -> None:
    cfg.max_batch_size = b.max_batch_size
    if b.dynamic and b.max_batch_size > 0:
        db = cfg.dynamic_batching
        db.max_queue_delay_microseconds = b.max_queue_delay_us
        db.preferred_batch_size.extend(b.preferred_batch_sizes)
        if b.max_queue_size or b.queue_timeout_us:
            policy = db.default_queue_policy
            policy.max_queue_size = b.max_queue_size
            if b.queue_timeout_us:
                policy.default_timeout_microseconds = b.queue_timeout_us
                policy.timeout_action = mc.ModelQueuePolicy.REJECT
                policy.allow_timeout_override = True
    cfg.instance_group.append(mc.ModelInstanceGroup(kind=kind, count=b.instance_count))


def _param(cfg: mc.ModelConfig, key: str, value: object) -> None:
    cfg.parameters[key].string_value = str(value)


def python_model_config(m: PythonModel, target: Target) -> mc.ModelConfig:
    if m.batching.shed_wait_ms and m.adapter not in SHEDDING_ADAPTERS:
        raise ValueError(f"{m.name}: Batching.shed_wait_ms is taken only by the adapters {SHEDDING_ADAPTERS}")
    cfg = mc.ModelConfig(name=m.name, backend="python")
    cfg.input.extend(_tensor(t, mc.ModelInput, ragged=m.ragged_inputs, target=target) for t in m.inputs)
    cfg.output.extend(_tensor(t, mc.ModelOutput, target=target) for t in m.outputs)
    _apply_batching(cfg, m.batching, kind=mc.ModelInstanceGroup.KIND_CPU)
    for key, value in m.parameters.items():
        _param(cfg, key, value)
    if m.batching.shed_wait_ms:
        _param(cfg, SHED_WAIT_PARAMETER, m.batching.shed_wait_ms)
    return cfg


def engine_model_config(m: EngineModel, target: Target) -> mc.ModelConfig:
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose from {TARGETS}")
    if target == "local":
        # The pip tritonserver has no onnxruntime backend: a Python-backend runner executes the graph.
        cfg = mc.ModelConfig(name=m.name, backend="python")
        _param(cfg, GRAPH_FILE_PARAMETER, ENGINE_FILES[target])
        _param(cfg, ENGINE_PARAMETER, m.engine)
        _param(cfg, PRECISION_PARAMETER, m.precision)
        _param(cfg, THREADS_PARAMETER, m.intra_op_threads)
        if m.parity_scope:
            _param(cfg, PARITY_SCOPE_PARAMETER, ",".join(m.parity_scope))
        if m.tokenizer is not None:
            for key, value in {
                **m.tokenizer.parameters,
                TOKENIZER_DIR_PARAMETER: m.tokenizer.artifact.dest,
                TEXT_INPUT_PARAMETER: m.tokenizer.text_input.name,
                **(m.head.parameters if m.head is not None else {}),
            }.items():
                _param(cfg, key, value)
            if m.batching.shed_wait_ms:
                _param(cfg, SHED_WAIT_PARAMETER, m.batching.shed_wait_ms)
        elif m.max_sequence_length or m.value_ranges:
            from search_backends.engine_inputs import EngineInputRules

            for key, value in EngineInputRules(m.max_sequence_length, dict(m.value_ranges)).to_parameters().items():
                _param(cfg, key, value)
        kind, ragged = mc.ModelInstanceGroup.KIND_CPU, m.ragged
    elif target == "triton-cpu" and m.engine == ENGINE_OPENVINO:
        # Triton's openvino backend (NVIDIA's CPU containers) on the IR the writer converts from the ONNX graph.
        cfg = mc.ModelConfig(name=m.name, backend="openvino", default_model_filename=OPENVINO_IR_FILE)
        _param(cfg, "PERFORMANCE_HINT", "LATENCY")
        _param(cfg, "NUM_STREAMS", 1)
        if m.precision == "bf16":
            _param(cfg, "HINT_BF16", "YES")
        if m.intra_op_threads:
            _param(cfg, "INFERENCE_NUM_THREADS", m.intra_op_threads)
        kind, ragged = mc.ModelInstanceGroup.KIND_CPU, False
    elif target == "triton-cpu":
        cfg = mc.ModelConfig(name=m.name, platform="onnxruntime_onnx", default_model_filename=ENGINE_FILES[target])
        if m.intra_op_threads:
            _param(cfg, "intra_op_thread_count", m.intra_op_threads)
        kind, ragged = mc.ModelInstanceGroup.KIND_CPU, False
    else:
        cfg = mc.ModelConfig(name=m.name, platform="tensorrt_plan", default_model_filename=ENGINE_FILES[target])
        kind, ragged = mc.ModelInstanceGroup.KIND_GPU, False
    fused = target == "local" and m.tokenizer is not None
    if m.batching.shed_wait_ms and not fused:
        raise ValueError(
            f"{m.name}: Batching.shed_wait_ms is taken only by the local target's fused text stages, not by a "
            f"{target} engine (shed in front of Triton there)"
        )
    inputs = (m.tokenizer.text_input, *(m.head.inputs if m.head is not None else ())) if fused else m.inputs
    outputs = m.head.outputs if fused and m.head is not None else m.outputs
    cfg.input.extend(_tensor(t, mc.ModelInput, ragged=ragged and m.tokenizer is None, target=target) for t in inputs)
    cfg.output.extend(_tensor(t, mc.ModelOutput, target=target) for t in outputs)
    _apply_batching(cfg, m.batching, kind=kind)
    if target == "triton-gpu" and m.profiles:
        # One engine profile per instance group entry keeps instances on the shapes they were built for.
        cfg.instance_group[0].profile.extend(str(i) for i in range(len(m.profiles)))
    return cfg


def ensemble_config(m: Ensemble, target: Target) -> mc.ModelConfig:
    cfg = mc.ModelConfig(name=m.name, platform="ensemble", max_batch_size=m.max_batch_size)
    cfg.input.extend(_tensor(t, mc.ModelInput, target=target) for t in m.inputs)
    cfg.output.extend(_tensor(t, mc.ModelOutput, target=target) for t in m.outputs)
    for step in m.steps:
        s = cfg.ensemble_scheduling.step.add(model_name=step.model, model_version=-1)
        for k, v in step.input_map.items():
            s.input_map[k] = v
        for k, v in step.output_map.items():
            s.output_map[k] = v
    return cfg


def model_config(m: Model, target: Target) -> mc.ModelConfig:
    if isinstance(m, Ensemble):
        return ensemble_config(m, target)
    if isinstance(m, EngineModel):
        return engine_model_config(m, target)
    return python_model_config(m, target)


def to_pbtxt(cfg: mc.ModelConfig) -> str:
    return text_format.MessageToString(cfg)


def parse_pbtxt(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())
