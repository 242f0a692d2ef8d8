"""Generated configs parse with Triton's own protobuf and ensembles are wired to real tensors."""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from search_build.repository.configs import model_config, to_pbtxt
from search_build.pipelines import build_pipeline, pipeline_names
from search_build.repository.spec import TARGETS, Ensemble


def _configs(pipeline, target):
    return {m.name: text_format.Parse(to_pbtxt(model_config(m, target)), mc.ModelConfig()) for m in pipeline.models}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", pipeline_names())
def test_ensemble_maps_name_real_tensors(name, target):
    pipeline = build_pipeline(name, target=target)
    configs = _configs(pipeline, target)
    for cfg in configs.values():
        if cfg.platform != "ensemble":
            continue
        available = {t.name: t for t in cfg.input}
        for step in cfg.ensemble_scheduling.step:
            assert step.model_name in configs, f"{cfg.name}: step calls unknown model {step.model_name}"
            callee = configs[step.model_name]
            callee_inputs = {t.name: t for t in callee.input}
            callee_outputs = {t.name: t for t in callee.output}
            for model_input, tensor in step.input_map.items():
                assert model_input in callee_inputs, f"{step.model_name} has no input {model_input}"
                assert tensor in available, f"{cfg.name}: {tensor} is used before anything produces it"
                assert available[tensor].data_type == callee_inputs[model_input].data_type, (
                    step.model_name,
                    model_input,
                )
            for model_output, tensor in step.output_map.items():
                assert model_output in callee_outputs, f"{step.model_name} has no output {model_output}"
                available[tensor] = callee_outputs[model_output]
            required = {t.name for t in callee.input if not t.optional}
            assert required <= set(step.input_map), (
                f"{step.model_name}: unmapped inputs {required - set(step.input_map)}"
            )
            assert callee.max_batch_size >= cfg.max_batch_size or callee.max_batch_size == 0
        for out in cfg.output:
            assert out.name in available, f"{cfg.name}: output {out.name} is never produced"
            assert list(available[out.name].dims) == list(out.dims)


@pytest.mark.parametrize("name", pipeline_names())
def test_target_specific_engines(name):
    # The unfused shape (the local target fuses query_embedding's tokenizer into its engine: test below).
    pipeline = build_pipeline(name, target="triton-cpu")
    local, cpu, gpu = (_configs(pipeline, t) for t in TARGETS)
    engine_specs = {m.name: m for m in pipeline.models if type(m).__name__ == "EngineModel"}
    engines = list(engine_specs)
    for engine in engines:
        assert local[engine].backend == "python"
        assert all(i.allow_ragged_batch == engine_specs[engine].ragged for i in local[engine].input)
        if engine_specs[engine].engine == "openvino":  # Triton's openvino backend reads the converted IR
            assert cpu[engine].backend == "openvino" and cpu[engine].default_model_filename == "model.xml"
        else:
            assert cpu[engine].platform == "onnxruntime_onnx" and cpu[engine].default_model_filename == "model.onnx"
        assert local[engine].parameters["engine"].string_value == engine_specs[engine].engine
        assert gpu[engine].platform == "tensorrt_plan" and gpu[engine].default_model_filename == "model.plan"
        assert gpu[engine].instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
        assert all(i.data_type != mc.TYPE_INT64 for i in gpu[engine].input), "TensorRT takes int32 indices"
    # Everything but the engines is the same on every target (tokenizers, loops, ensembles).
    for m in pipeline.models:
        if m.name not in engines:
            if not any(t.data_type == mc.TYPE_INT64 for t in [*local[m.name].input, *local[m.name].output]):
                assert local[m.name] == cpu[m.name] == gpu[m.name]
    assert any(isinstance(m, Ensemble) for m in pipeline.models) or pipeline.entry


def test_local_query_embedding_is_one_stub():
    """Local: TEXT goes straight into the encoder's stub (tokenizer fused); other targets keep the tokenizer stub
    in front of a native engine that takes ids."""
    local, cpu = (build_pipeline("query_embedding", target=t) for t in ("local", "triton-cpu"))
    assert [m.name for m in local.models] == ["query_embedding_encoder", "query_embedding"]
    assert [m.name for m in cpu.models] == ["query_embedding_tokenize", "query_embedding_encoder", "query_embedding"]
    encoder = _configs(local, "local")["query_embedding_encoder"]
    assert [i.name for i in encoder.input] == ["TEXT"] and encoder.input[0].data_type == mc.TYPE_STRING
    assert encoder.parameters["tokenizer_dir"].string_value == "tokenizer"
    assert encoder.dynamic_batching.max_queue_delay_microseconds == 0  # the entry stage: no added wait
    native = _configs(cpu, "triton-cpu")["query_embedding_encoder"]
    assert [i.name for i in native.input] == ["input_ids", "attention_mask"]
    with pytest.raises(ValueError, match="fuse_tokenizer"):
        build_pipeline("query_embedding", target="triton-cpu", fuse_tokenizer=True)


def test_search_bar_runs_its_stages_in_process_where_each_is_one_stub():
    """Local: search_bar runs the stage models' own files (named in its parameters, each a model of the same
    pipeline) and calls nothing through BLS; other targets, and a spell stage that decodes through other models,
    call the stage entries."""
    from search_backends.contracts import search_bar as C

    local = build_pipeline(C.SEARCH_BAR, target="local")
    bar = _configs(local, "local")[C.SEARCH_BAR]
    params = {k: v.string_value for k, v in bar.parameters.items()}
    assert params[C.PARAM_STAGES] == C.STAGES_INPROCESS and not local.model(C.SEARCH_BAR).bls_calls
    stubs = [
        params[k] for k in (C.PARAM_SPELL_MODEL, C.PARAM_INTENT_MODEL, C.PARAM_EMBEDDING_MODEL, C.PARAM_CATALOG_MODEL)
    ]
    names = {m.name for m in local.models}
    assert set(stubs) <= names, "every model whose files search_bar runs is written with it"
    assert local.model(params[C.PARAM_INTENT_MODEL]).head is not None
    for target in ("triton-cpu", "triton-gpu"):
        other = _configs(build_pipeline(C.SEARCH_BAR, target=target), target)[C.SEARCH_BAR]
        assert other.parameters[C.PARAM_STAGES].string_value == C.STAGES_BLS
    bls = build_pipeline(C.SEARCH_BAR, target="local", spell_engine="bls")
    assert bls.model(C.SEARCH_BAR).parameters[C.PARAM_STAGES] == C.STAGES_BLS
    assert set(bls.model(C.SEARCH_BAR).bls_calls) == {
        C.SPELL_ENTRY,
        C.INTENT_ENTRY,
        C.EMBEDDING_ENTRY,
        C.CATALOG_SEARCH,
    }
    with pytest.raises(ValueError, match="stages='inprocess'"):
        build_pipeline(C.SEARCH_BAR, target="local", spell_engine="bls", stages="inprocess")
    with pytest.raises(ValueError, match="stages must be one of"):
        build_pipeline(C.SEARCH_BAR, stages="fused")


@pytest.mark.parametrize("name", ["query_embedding", "query_intent"])
def test_load_shedding_reaches_the_fused_stage_and_nothing_else(name):
    """shed_wait_ms becomes the fused entry stage's parameter (no Triton queue policy); builds that cannot honour it
    (an engine of another target, the unfused stages) refuse it instead of ignoring it."""
    from search_backends.admission import SHED_WAIT_PARAMETER
    from search_build.repository.configs import engine_model_config
    from search_build.repository.spec import Batching

    pipeline = build_pipeline(name, shed_wait_ms=40)
    (stage,) = [m for m in pipeline.models if not isinstance(m, Ensemble)]
    cfg = _configs(pipeline, "local")[stage.name]
    assert cfg.parameters[SHED_WAIT_PARAMETER].string_value == "40"
    assert not cfg.dynamic_batching.HasField("default_queue_policy")
    assert SHED_WAIT_PARAMETER not in _configs(build_pipeline(name), "local")[stage.name].parameters
    with pytest.raises(ValueError, match="shed_wait_ms"):
        build_pipeline(name, target="triton-cpu", shed_wait_ms=40)
    with pytest.raises(ValueError, match="shed_wait_ms"):
        engine_model_config(stage, "triton-gpu")
    with pytest.raises(ValueError, match="shed_wait_ms"):
        Batching(shed_wait_ms=-1)


def test_spell_load_shedding_reaches_the_ctranslate2_stage_only():
    from search_backends.admission import SHED_WAIT_PARAMETER

    pipeline = build_pipeline("spell_correct", shed_wait_ms=100)
    cfg = _configs(pipeline, "local")["spell_generate"]
    assert cfg.parameters[SHED_WAIT_PARAMETER].string_value == "100"
    assert not cfg.dynamic_batching.HasField("default_queue_policy")
    for mode in ("inprocess", "bls"):  # the loop modes bound their rows with inflight_max_rows
        with pytest.raises(ValueError, match="shed_wait_ms"):
            build_pipeline("spell_correct", engine_mode=mode, shed_wait_ms=100)


def test_one_encoder_is_never_served_under_two_parity_gates():
    """On local, product_encoder serves duplicates alone (query_intent has its fused stage), so its precision answers
    to the duplicate gate; an unfused query_intent would share it under the intent gate, and the build refuses that.
    On triton-cpu both pipelines share it, gated for both heads."""
    from search_build.export.engine_parity import PARITY_SCOPE_PARAMETER
    from search_build.repository.writer import spec_configs

    duplicate = build_pipeline("product_duplicate")
    assert duplicate.model("product_encoder").parity_scope == ("product_duplicate",)
    assert build_pipeline("query_intent").model("query_intent_encoder").parity_scope == ("query_intent",)
    rendered = model_config(duplicate.model("product_encoder"), "local")
    assert rendered.parameters[PARITY_SCOPE_PARAMETER].string_value == "product_duplicate"
    with pytest.raises(ValueError, match="product_encoder is defined differently by two pipelines"):
        spec_configs([build_pipeline("query_intent", fuse_text=False), duplicate], "local")
    shared = [build_pipeline(name, target="triton-cpu") for name in ("query_intent", "product_duplicate")]
    assert {p.model("product_encoder").parity_scope for p in shared} == {("query_intent", "product_duplicate")}
    assert "product_encoder" in spec_configs(shared, "triton-cpu")
