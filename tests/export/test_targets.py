"""Every registered pipeline builds for every target: configs parse with Triton's protobuf and match
the engines on disk; TensorRT preparation (int32 graphs, profiles) is checked here, the TensorRT build
itself only where TensorRT is installed; int8 quantization keeps embeddings close to FP32."""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from search_build.repository.configs import model_config, to_pbtxt
from search_build.pipelines import build_pipeline, pipeline_names
from search_build.repository.writer import served_model, write_repository, without_artifact_digest
from search_build.repository.spec import EngineModel, OptimizationProfile
from search_build.export.tensorrt_engines import (
    TensorRTUnavailable,
    engine_builder_for,
    int64_inputs_to_int32,
    profile_shapes,
)
from search_build.export.quantize import output_drift, quantize_int8, synthetic_feeds

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
ONNX_TO_TRITON = {
    onnx.TensorProto.FLOAT: mc.TYPE_FP32,
    onnx.TensorProto.FLOAT16: mc.TYPE_FP16,
    onnx.TensorProto.BFLOAT16: mc.TYPE_BF16,
    onnx.TensorProto.INT64: mc.TYPE_INT64,
    onnx.TensorProto.INT32: mc.TYPE_INT32,
    onnx.TensorProto.BOOL: mc.TYPE_BOOL,
}


def _engines(pipeline):
    return [m for m in pipeline.models if isinstance(m, EngineModel)]


def _assert_graph_matches_config(graph_path, cfg):
    graph = onnx.load(str(graph_path), load_external_data=False).graph
    for declared, actual in ((cfg.input, graph.input), (cfg.output, graph.output)):
        actual = {v.name: ONNX_TO_TRITON.get(v.type.tensor_type.elem_type) for v in actual}
        for t in declared:
            assert t.name in actual, f"{cfg.name}: graph has no tensor {t.name} (has {sorted(actual)})"
            assert actual[t.name] == t.data_type, f"{cfg.name}.{t.name}: graph {actual[t.name]} vs config {t.data_type}"


@pytest.fixture(scope="module", params=pipeline_names())
def pipeline(request):
    return build_pipeline(request.param)


@pytest.fixture(scope="module", params=pipeline_names())
def gpu_pipeline(request):
    """As built for triton-gpu: its engine models are what TensorRT gets."""
    return build_pipeline(request.param, target="triton-gpu")


@pytest.mark.parametrize("target", ["local", "triton-cpu"])
def test_cpu_targets_write_valid_repositories(pipeline, target, tmp_path):
    pipeline = build_pipeline(pipeline.name, target=target)
    repo = write_repository([pipeline], tmp_path, target, progress=lambda _: None)
    for m in pipeline.models:
        text = (repo / m.name / "config.pbtxt").read_text()
        cfg = text_format.Parse(text, mc.ModelConfig())  # strict: unknown fields fail
        assert without_artifact_digest(cfg) == model_config(served_model(m, repo), target)
        if isinstance(m, EngineModel):
            if target == "triton-cpu":
                assert not (repo / m.name / "1" / "model.py").exists()
            if m.tokenizer is not None and target == "local":  # fused: TEXT in, the stub tokenizes for the graph
                assert [t.name for t in cfg.input] == [
                    m.tokenizer.text_input.name,
                    *(t.name for t in (m.head.inputs if m.head else ())),
                ]
                assert (repo / m.name / "1" / m.tokenizer.artifact.dest / "tokenizer.json").exists()
                graph = onnx.load(str(repo / m.name / "1" / "model.onnx"), load_external_data=False).graph
                assert [v.name for v in graph.input] == [t.name for t in m.inputs]
                continue
            if cfg.backend == "openvino":
                _assert_ir_matches_config(repo / m.name / "1" / cfg.default_model_filename, cfg)
                continue
            graph = repo / m.name / "1" / "model.onnx"
            assert graph.stat().st_size > 0
            if target == "triton-cpu":
                assert cfg.platform == "onnxruntime_onnx"
            _assert_graph_matches_config(graph, cfg)


def _assert_ir_matches_config(xml_path, cfg):
    """What Triton's openvino backend would read: IR whose tensors are the config's, same element types."""
    import openvino as ov

    model = ov.Core().read_model(str(xml_path))
    assert xml_path.with_suffix(".bin").stat().st_size > 0
    for declared, actual in ((cfg.input, model.inputs), (cfg.output, model.outputs)):
        types = {p.get_any_name(): p.get_element_type().get_type_name() for p in actual}
        for t in declared:
            assert t.name in types, f"{cfg.name}: IR has no tensor {t.name} (has {sorted(types)})"
            assert types[t.name] == mc.DataType.Name(t.data_type)[len("TYPE_") :].lower().replace("int", "i").replace(
                "fp", "f"
            ), (cfg.name, t.name, types[t.name])


def test_gpu_configs_match_the_int32_engine_graphs(gpu_pipeline, tmp_path):
    """What TensorRT would be given: the rewritten graph's boundary types equal the triton-gpu config."""
    repo = write_repository([gpu_pipeline], tmp_path / "cpu", "triton-cpu", progress=lambda _: None)
    for m in gpu_pipeline.models:
        cfg = text_format.Parse(to_pbtxt(model_config(m, "triton-gpu")), mc.ModelConfig())
        assert all(t.data_type != mc.TYPE_INT64 for t in [*cfg.input, *cfg.output])
        if isinstance(m, EngineModel):
            rewritten = tmp_path / m.name / "model.int32.onnx"
            int64_inputs_to_int32(
                repo / m.name / "1" / "model.onnx", rewritten, keep_outputs=[t.name for t in m.outputs]
            )
            _assert_graph_matches_config(rewritten, cfg)
            graph = onnx.load(str(rewritten), load_external_data=False).graph
            assert [v.name for v in graph.output] == [t.name for t in cfg.output], "engine bindings = config outputs"
            if m.profiles:
                assert len(cfg.instance_group[0].profile) == len(profile_shapes(m))


def _feed_shapes(m):
    """A mid-size batch plus the min, opt and max shapes of the engine's profiles (e.g. an empty KV cache,
    the longest sequence). The max shapes keep the min batch: only the other axes are bounded by the graph."""
    yield "batch=3,length=12", None
    for index, profile in enumerate(profile_shapes(m) if m.profiles else ()):
        yield f"profile {index} min", {name: lo for name, (lo, _, _) in profile.items()}
        yield f"profile {index} opt", {name: opt for name, (_, opt, _) in profile.items()}
        batched = m.batching.max_batch_size > 0
        yield (
            f"profile {index} max",
            {name: (lo[0], *hi[1:]) if batched else hi for name, (lo, _, hi) in profile.items()},
        )


def test_int32_graph_gives_the_same_outputs(gpu_pipeline, tmp_path):
    """Same outputs at every shape TensorRT would be built for: the profiles must also be runnable shapes."""
    repo = write_repository([gpu_pipeline], tmp_path / "cpu", "triton-cpu", progress=lambda _: None)
    for m in _engines(gpu_pipeline):
        original = repo / m.name / "1" / "model.onnx"
        rewritten = tmp_path / f"{m.name}.int32.onnx"
        changed = int64_inputs_to_int32(original, rewritten)
        reference, session = ort.InferenceSession(str(original)), ort.InferenceSession(str(rewritten))
        assert {i.name for i in session.get_inputs() if i.type == "tensor(int32)"} == set(changed) & {
            i.name for i in reference.get_inputs()
        }
        for label, shapes in _feed_shapes(m):
            feeds = synthetic_feeds(m, original, batch=3, length=12, shapes=shapes)
            want = reference.run(None, feeds)
            int32_feeds = {k: v.astype(np.int32) if v.dtype == np.int64 else v for k, v in feeds.items()}
            got = session.run(None, int32_feeds)
            assert len(got) == len(want) == len(reference.get_outputs()), f"{m.name} {label}"
            for w, g in zip(want, got):
                assert g.shape == w.shape, f"{m.name} {label}"
                assert np.array_equal(g, w) if w.dtype.kind in "iub" else np.abs(g - w).max() < 1e-5, (
                    f"{m.name} {label}"
                )


def test_profiles_are_consistent_with_the_spec(gpu_pipeline):
    for m in _engines(gpu_pipeline):
        for profile in profile_shapes(m):
            assert set(profile) == {t.name for t in m.inputs}
            for name, (lo, opt, hi) in profile.items():
                assert hi[0] <= m.batching.max_batch_size


def test_bad_profiles_are_rejected():
    encoder = _engines(build_pipeline("query_embedding"))[0]
    too_big = dataclasses.replace(
        encoder,
        profiles=(
            OptimizationProfile(
                min={"input_ids": (1, 1), "attention_mask": (1, 1)},
                opt={"input_ids": (8, 16), "attention_mask": (8, 16)},
                max={
                    "input_ids": (encoder.batching.max_batch_size * 2, 128),
                    "attention_mask": (encoder.batching.max_batch_size * 2, 128),
                },
            ),
        ),
    )
    with pytest.raises(ValueError, match="exceeds max_batch_size"):
        profile_shapes(too_big)
    missing = dataclasses.replace(
        encoder,
        profiles=(
            OptimizationProfile(min={"input_ids": (1, 1)}, opt={"input_ids": (1, 8)}, max={"input_ids": (4, 16)}),
        ),
    )
    with pytest.raises(ValueError, match="attention_mask: missing"):
        profile_shapes(missing)
    inverted = dataclasses.replace(
        encoder,
        profiles=(
            OptimizationProfile(
                min={"input_ids": (4, 16), "attention_mask": (4, 16)},
                opt={"input_ids": (1, 8), "attention_mask": (1, 8)},
                max={"input_ids": (8, 32), "attention_mask": (8, 32)},
            ),
        ),
    )
    with pytest.raises(ValueError, match="min <= opt <= max"):
        profile_shapes(inverted)


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed: the real build test runs instead")
def test_gpu_build_without_tensorrt_fails_clearly(tmp_path, capsys):
    for precision in ("fp32", "fp16", "bf16"):
        with pytest.raises(TensorRTUnavailable, match="pip install tensorrt"):
            engine_builder_for(precision)
    from search_tools.cli import main

    with pytest.raises(TensorRTUnavailable, match="pip install tensorrt"):
        main(["build", "--target", "triton-gpu", "--precision", "fp16", "--out", str(tmp_path / "gpu")])
    assert not list((tmp_path).rglob("model.plan")), "no engine may be written without TensorRT"


@pytest.mark.tensorrt
@pytest.mark.skipif(
    not HAS_TENSORRT,
    reason="TensorRT is not installed here (pip install tensorrt on a CUDA machine); "
    "int32 rewrite and profiles are tested without it",
)
def test_tensorrt_engine_builds_and_loads(tmp_path):  # pragma: no cover - needs a GPU with TensorRT
    import tensorrt as trt

    pipeline = build_pipeline("query_embedding")
    repo = write_repository(
        [pipeline], tmp_path, "triton-gpu", engine_builder=engine_builder_for("fp16"), progress=lambda _: None
    )
    for m in _engines(pipeline):
        plan = repo / m.name / "1" / "model.plan"
        engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan.read_bytes())
        assert engine is not None and engine.num_optimization_profiles == len(profile_shapes(m))


def test_cpu_targets_reject_tensorrt_precisions(tmp_path):
    from search_tools.cli import main

    with pytest.raises(SystemExit, match="needs TensorRT"):
        main(["build", "--target", "triton-cpu", "--precision", "fp16", "--out", str(tmp_path)])


def test_int8_build_goes_through_the_gate(tmp_path, capsys):
    """`searchbar build --precision int8` quantizes, measures drift against FP32 on real queries, and is refused
    when retrieval would change (top-10 overlap below the gate), naming the measurement and the way out."""
    from search_build.export import engine_parity as P
    from search_build.export.quantize import quantize_int8
    from search_tools.cli import main

    fp32 = write_repository(
        [build_pipeline("query_embedding", engine="onnxruntime", precision="fp32")],
        tmp_path / "fp32",
        "triton-cpu",
        progress=lambda _: None,
    )
    ref = fp32 / "query_embedding_encoder" / "1" / "model.onnx"
    q8 = quantize_int8(ref, tmp_path / "int8.onnx")
    assert q8.stat().st_size < 0.7 * ref.stat().st_size  # MatMul weights int8; the embedding table stays FP32
    model = build_pipeline("query_embedding", target="triton-cpu", precision="int8").model("query_embedding_encoder")
    overlap = P.measure(model, ref, q8)["outputs"]["sentence_embedding"]["top10_overlap"]
    argv = [
        "build",
        "--pipelines",
        "query_embedding",
        "--target",
        "triton-cpu",
        "--precision",
        "int8",
        "--out",
        str(tmp_path / "int8"),
    ]
    if overlap < P.MIN_TOP10_OVERLAP:
        with pytest.raises(SystemExit, match=r"build stopped: .*top-10 overlap .* --precision fp32"):
            main(argv)
    else:
        assert main(argv) == 0 and (tmp_path / "int8" / "quantization_report.json").exists()


def test_quantize_int8_is_generic(tmp_path):
    """Any engine graph quantizes and runs; drift is reported per output."""
    for name in pipeline_names():
        pipeline = build_pipeline(name, engine="onnxruntime")
        repo = write_repository([pipeline], tmp_path / name, "triton-cpu", progress=lambda _: None)
        for m in _engines(pipeline):
            src = repo / m.name / "1" / "model.onnx"
            report = output_drift(src, quantize_int8(src, tmp_path / f"{m.name}.int8.onnx"), synthetic_feeds(m, src))
            graph_outputs = {o.name for o in onnx.load(str(src), load_external_data=False).graph.output}
            # Every graph output is reported (a graph may carry more than the served ones, e.g. the
            # spell encoder's hidden states), the served ones included.
            assert set(report) == graph_outputs >= {o.name for o in m.outputs}, (m.name, sorted(report))
            assert all(np.isfinite(s["max_abs"]) for s in report.values()), (m.name, report)


# ------------------------------------------------------------------------- each target wires what it builds


def _reachable(configs, manifest):
    """Models an entry reaches through ensemble steps and BLS calls."""
    seen, todo = set(), [p["entry"] for p in manifest["pipelines"].values()]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [step.model_name for step in configs[name].ensemble_scheduling.step]
            todo += manifest["bls_calls"].get(name, [])
    return seen


@pytest.fixture(scope="module")
def configs_only_repositories(tmp_path_factory):
    """`searchbar build --pipelines all --configs-only` for every target (no TensorRT needed)."""
    from search_build.repository.spec import TARGETS
    from search_tools.cli import main

    out = {}
    for target in TARGETS:
        repo = tmp_path_factory.mktemp(f"configs_{target}")
        main(
            [
                "build",
                "--pipelines",
                "all",
                "--target",
                target,
                "--configs-only",
                "--no-batching-overrides",
                "--out",
                str(repo),
            ]
        )
        out[target] = repo
    return out


@pytest.mark.parametrize("target", ["local", "triton-cpu", "triton-gpu"])
def test_configs_only_repository_wires_exactly_what_the_target_builds(configs_only_repositories, target):
    import json

    from search_build.deploy.sagemaker_package import read_configs

    repo = configs_only_repositories[target]
    configs = read_configs(repo)  # strict protobuf parse of every config.pbtxt
    manifest = json.loads((repo / "searchbar_manifest.json").read_text())
    assert _reachable(configs, manifest) == set(configs), "no model may sit idle in a target's repository"
    generate = {k: v.string_value for k, v in configs["spell_generate"].parameters.items()}
    spell_model = repo / "spell_generate" / "1" / "spell_model"
    engines = {"spell_encoder", "spell_decoder", "query_embedding_encoder", "product_encoder"} & set(configs)
    if target == "triton-gpu":
        assert generate["engine_mode"] == "bls"
        assert manifest["bls_calls"]["spell_generate"] == ["spell_encoder", "spell_decoder"]
        assert {"spell_encoder", "spell_decoder"} <= engines
        for name in engines:
            assert configs[name].platform == "tensorrt_plan"
            assert (repo / name / "1" / "model.onnx").exists() and not (repo / name / "1" / "model.plan").exists()
        assert sorted(manifest["engines_not_built"]) == sorted(engines)
        assert not (spell_model / "ctranslate2").exists()
    else:
        assert generate["engine_mode"] == "ctranslate2" and generate["ct2_device"] == "cpu"
        assert generate["ct2_compute_type"] == "float32"
        assert (spell_model / "ctranslate2" / "model.bin").exists() and (spell_model / "spell_decoder.onnx").exists()
        assert not {"spell_encoder", "spell_decoder"} & set(configs) and "spell_generate" not in manifest["bls_calls"]
        assert manifest["engines_not_built"] == []
        for name in engines:  # OpenVINO: the local runner, or Triton's openvino backend on triton-cpu
            assert configs[name].platform == "" and configs[name].backend == (
                "openvino" if target == "triton-cpu" else "python"
            )


def test_configs_only_gpu_repository_is_refused_by_serve_and_sagemaker(configs_only_repositories, tmp_path, capsys):
    from search_build.deploy.sagemaker_package import package
    from search_tools.cli import main

    repo = configs_only_repositories["triton-gpu"]
    assert main(["serve", "--repository", str(repo)]) == 2
    assert "--configs-only" in capsys.readouterr().err
    with pytest.raises(ValueError, match="configs-only"):
        package(repo, tmp_path / "model.tar.gz", default_model="spell_correct", python_env=None)


@pytest.mark.parametrize("precision, compute_type", [("fp32", "float32"), ("int8", "int8")])
def test_precision_reaches_the_spell_engine(precision, compute_type):
    generate = build_pipeline("spell_correct", precision=precision).model("spell_generate")
    assert generate.parameters["ct2_compute_type"] == compute_type
    gpu = build_pipeline("spell_correct", target="triton-gpu", engine_mode="ctranslate2", precision="fp16")
    assert gpu.model("spell_generate").parameters["ct2_compute_type"] == "float16"
    assert gpu.model("spell_generate").parameters["ct2_device"] == "cuda"
    with pytest.raises(ValueError, match="engine_mode"):
        build_pipeline("spell_correct", engine_mode="fastest")
