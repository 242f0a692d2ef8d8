"""Sweep configs, input data, choosing, applying and costing (no server: fast)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from search_build.repository.batching_overrides import apply_batching, save_overrides
from search_build.repository.configs import model_config, parse_pbtxt, to_pbtxt
from search_build.pipelines import build_pipeline, pipeline_names
from search_tools import analyzer_config, input_data
from search_tools.sweep import apply, candidates, model_analyzer
from search_backends.contracts.product_search import PAIR_FIELDS
from support.sweep import repository_with_configs, two_stage_query_embedding

PIPELINES = ("query_embedding", "query_intent", "product_duplicate", "spell_correct", "search_bar")
# Ensemble inputs each pipeline's issue specifies (checked against the spec once it is registered).
EXPECTED_INPUTS = {
    "query_embedding": {"TEXT"},
    "query_intent": {"TEXT"},
    "spell_correct": {"TEXT"},
    "search_bar": {"TEXT"},
    "product_duplicate": set(PAIR_FIELDS),
}


def test_resolved_config_points_at_this_machine(tmp_path):
    cfg = analyzer_config.load("query_embedding")
    resolved = analyzer_config.resolve_for_this_machine(
        cfg.model_analyzer, model_repository=tmp_path, export_dir=tmp_path / "ma", cpu_only_composing=["x"]
    )
    assert Path(resolved["triton_server_path"]).exists()
    assert (
        Path(resolved["triton_server_flags"]["backend_directory"]) / "python" / "triton_python_backend_stub"
    ).exists()
    assert "nvidia_pytriton.libs" in resolved["triton_server_environment"]["LD_LIBRARY_PATH"]
    assert Path(resolved["profile_models"]["query_embedding"]["perf_analyzer_flags"]["input-data"]).is_absolute()
    assert (
        resolved["cpu_only_composing_models"] == ["x"] and cfg.model_analyzer["model_repository"] == "model_repository"
    )
    ports = {
        int(resolved[k].rsplit(":", 1)[-1].split("/")[0])
        for k in ("triton_http_endpoint", "triton_grpc_endpoint", "triton_metrics_url")
    }
    assert len(ports) == 3 and not ports & {8000, 8001, 8002}
    assert all(
        resolved[k].startswith(("127.0.0.1:", "http://127.0.0.1:"))
        for k in ("triton_http_endpoint", "triton_grpc_endpoint", "triton_metrics_url")
    )


@pytest.mark.parametrize("name", PIPELINES)
def test_input_data_is_committed_regenerable_and_matches_inputs(name, tmp_path):
    committed = input_data.input_data_path(name)
    assert committed.read_text() == input_data.write_pipeline_input_data(name, tmp_path).read_text()
    rows = json.loads(committed.read_text())["data"]
    assert len(rows) >= 20
    dtypes = dict.fromkeys(EXPECTED_INPUTS[name], "STRING")
    if name in pipeline_names():
        pipeline = build_pipeline(name)
        dtypes = {t.name: t.dtype for t in pipeline.model(pipeline.entry).inputs}
        assert EXPECTED_INPUTS[name] <= set(dtypes)
    # perf_analyzer reads each input's content as its dtype: strings for STRING, JSON numbers otherwise.
    python_type = {"STRING": str, "INT32": int, "FP32": float, "BOOL": bool}
    for row in rows:
        assert set(row) == set(dtypes)
        for input_name, v in row.items():
            (value,) = v["content"]
            assert v["shape"] == [1] and type(value) is python_type[dtypes[input_name]], (input_name, value)
            assert value or dtypes[input_name] != "STRING"


def test_apply_refuses_a_repository_without_the_pipeline(tmp_path):
    with pytest.raises(FileNotFoundError, match="searchbar build"):
        apply.apply_to_repository(two_stage_query_embedding(), tmp_path, dry_run=True)


def test_model_analyzer_results_become_candidates(tmp_path):
    base = two_stage_query_embedding()
    out = tmp_path / "ma"
    (out / "results").mkdir(parents=True)
    variants = {
        "query_embedding_tokenize_config_0": (base.model("query_embedding_tokenize"), 2, 4),
        "query_embedding_encoder_config_1": (base.model("query_embedding_encoder"), 1, 16),
    }
    for variant, (model, count, mbs) in variants.items():
        cfg = model_config(model, "local")
        cfg.max_batch_size, cfg.instance_group[0].count = mbs, count
        (out / "output_repository" / variant).mkdir(parents=True)
        (out / "output_repository" / variant / "config.pbtxt").write_text(to_pbtxt(cfg))
    (out / "results" / "metrics-model-inference.csv").write_text(
        "Model,Batch,Concurrency,Model Config Path,Instance Group,Max Batch Size,Satisfies Constraints,"
        "Throughput (infer/sec),p99 Latency (ms)\n"
        'query_embedding,1,128,"query_embedding_config_default: a_default, b_default","1:CPU,1:CPU","64,64",No,494.0,350.1\n'
        'query_embedding,1,4,"query_embedding_config_0: query_embedding_tokenize_config_0, '
        'query_embedding_encoder_config_1","2:CPU,1:CPU","4,16",Yes,335.0,24.4\n'
    )
    for variant in ("a_default", "b_default"):  # the default variants: the spec's own configs
        (out / "output_repository" / variant).mkdir(parents=True)
        (out / "output_repository" / variant / "config.pbtxt").write_text(
            to_pbtxt(model_config(base.model("query_embedding_encoder"), "local"))
        )
    rows = model_analyzer.read_model_analyzer_results(out)
    assert [r.satisfies for r in rows] == [False, True] and rows[1].p99_ms == 24.4
    (c,) = model_analyzer.analyzer_candidates(rows, base, limit=3)
    assert c.batching["query_embedding_tokenize"] == {
        "max_batch_size": 4,
        "instance_count": 2,
        "max_queue_delay_us": 100,
    }
    assert c.batching["query_embedding_encoder"]["max_batch_size"] == 16


def test_model_analyzer_results_of_a_python_entry_become_candidates(tmp_path):
    """A Python entry (search_bar) is profiled as itself: its row names one variant, no composing list."""
    base = build_pipeline("search_bar")
    out = tmp_path / "ma"
    (out / "results").mkdir(parents=True)
    cfg = model_config(base.model("search_bar"), "local")
    cfg.max_batch_size, cfg.instance_group[0].count = 8, 3
    (out / "output_repository" / "search_bar_config_2").mkdir(parents=True)
    (out / "output_repository" / "search_bar_config_2" / "config.pbtxt").write_text(to_pbtxt(cfg))
    (out / "results" / "metrics-model-inference.csv").write_text(
        "Model,Batch,Concurrency,Model Config Path,Instance Group,Max Batch Size,Satisfies Constraints,"
        "Throughput (infer/sec),p99 Latency (ms)\n"
        "search_bar,1,4,search_bar_config_2,3:CPU,8,Yes,112.0,48.5\n"
    )
    (row,) = model_analyzer.read_model_analyzer_results(out)
    delay = cfg.dynamic_batching.max_queue_delay_microseconds
    assert row.batching == {"search_bar": {"max_batch_size": 8, "instance_count": 3, "max_queue_delay_us": delay}}
    (c,) = model_analyzer.analyzer_candidates([row], base, limit=3)
    assert c.batching["search_bar"]["instance_count"] == 3


def test_bls_composing_models_come_from_the_spec(tmp_path):
    from search_build.pipelines.spell_correct import spell_correct_pipeline

    assert model_analyzer.bls_composing_models(build_pipeline("spell_correct")) == []  # engine_mode "inprocess"
    assert model_analyzer.bls_composing_models(spell_correct_pipeline(engine_mode="bls")) == [
        "spell_decoder",
        "spell_encoder",
    ]
    cfg = dict(analyzer_config.load("spell_correct").model_analyzer, bls_composing_models=["stale"])
    kw = dict(model_repository=tmp_path, export_dir=tmp_path / "ma")
    assert "bls_composing_models" not in analyzer_config.resolve_for_this_machine(cfg, bls_composing=[], **kw)
    assert analyzer_config.resolve_for_this_machine(cfg, bls_composing=["b"], **kw)["bls_composing_models"] == ["b"]


def test_applying_a_shared_model_names_the_other_pipelines():
    shared = apply.shared_models(
        build_pipeline("query_intent", fuse_text=False), ["product_encoder", "query_intent_head"]
    )
    assert shared == {"product_encoder": ["product_duplicate"]}
    assert apply.shared_models(build_pipeline("query_embedding"), ["query_embedding_encoder"]) == {}


def test_reports_only_config_is_a_one_point_search_on_the_same_checkpoint(tmp_path):
    cfg = analyzer_config.resolve_for_this_machine(
        analyzer_config.load("query_embedding", "quick").model_analyzer,
        model_repository=tmp_path,
        export_dir=tmp_path / "ma",
    )
    again = model_analyzer.reports_only_config(cfg)
    assert again["run_config_search_max_instance_count"] == 1
    assert again["run_config_search_max_model_batch_size"] == cfg["run_config_search_min_model_batch_size"]
    assert again["checkpoint_directory"] == cfg["checkpoint_directory"] and again["export_path"] == cfg["export_path"]
    assert again["output_model_repository_path"] != cfg["output_model_repository_path"]  # variants read back intact
    assert cfg["run_config_search_max_instance_count"] == 2  # the original is untouched


def test_smaller_batches_become_preferred_sizes_so_requests_keep_their_rows():
    base = two_stage_query_embedding()
    (proposed,) = candidates.fallback_candidates(base, [2], [4])
    kept = candidates.keep_request_rows(proposed, base)
    enc = kept.batching["query_embedding_encoder"]
    assert enc["max_batch_size"] == 64 and enc["preferred_batch_sizes"] == [4] and enc["instance_count"] == 2
    assert kept.name == f"tokenize x2 b64 p4 d100, encoder x2 b64 p4 d500 {enc['engine']}-{enc['precision']}"
    served = kept.pipeline(base)
    assert served.model("query_embedding").max_batch_size == 64  # the ensemble is not clamped to 4 rows
    cfg = model_config(served.model("query_embedding_encoder"), "local")
    assert cfg.max_batch_size == 64 and list(cfg.dynamic_batching.preferred_batch_size) == [4]
    # the candidates the sweep measures are all converted
    assert all(
        b["max_batch_size"] == 64
        for c in candidates.candidate_list(base, [proposed], [0], 3)
        for b in c.batching.values()
    )
    assert candidates.keep_request_rows(candidates.Candidate("d", candidates.tuned_batching(base)), base).name == "d"


def test_apply_refuses_to_retune_a_model_another_pipeline_was_tuned_with(tmp_path, capsys, monkeypatch):
    # On triton-cpu/gpu both product ensembles serve the one product_encoder (on local, query_intent has its own
    # fused copy, so nothing is shared there): the sharing those targets have.
    monkeypatch.setattr(
        apply,
        "shared_models",
        lambda base, models: (
            {"product_encoder": ["query_intent"]}
            if base.name == "product_duplicate"
            else {"product_encoder": ["product_duplicate"]}
        ),
    )
    intent_choice = {
        "product_encoder": {
            "instance_count": 1,
            "max_batch_size": 64,
            "max_queue_delay_us": 0,
            "preferred_batch_sizes": [],
        }
    }
    overrides = save_overrides(tmp_path / "overrides.json", intent_choice, source={"query_intent": {"candidate": "d0"}})
    duplicate = build_pipeline("product_duplicate")
    same = {"product_encoder": dict(intent_choice["product_encoder"])}
    assert apply.tuning_conflicts(duplicate, same, overrides) == []
    other = {"product_encoder": {**intent_choice["product_encoder"], "instance_count": 2, "preferred_batch_sizes": [4]}}
    (clash,) = apply.tuning_conflicts(duplicate, other, overrides)
    assert "product_encoder was tuned for query_intent" in clash and "x2 b64 p4 d0" in clash
    # re-tuning the pipeline that owns the setting is no conflict
    assert apply.tuning_conflicts(build_pipeline("query_intent", fuse_text=False), other, overrides) == []

    repo = repository_with_configs(duplicate, tmp_path / "repo")
    before = (repo / "product_encoder" / "config.pbtxt").read_text()
    args = argparse.Namespace(
        pipeline="product_duplicate", apply=True, dry_run=False, force=False, repository=repo, overrides=overrides
    )
    assert apply.apply_choice(duplicate, candidates.Candidate("c", other), args) == 0
    assert "not applying" in capsys.readouterr().out
    assert (repo / "product_encoder" / "config.pbtxt").read_text() == before
    assert json.loads(overrides.read_text())["models"]["product_encoder"] == intent_choice["product_encoder"]
    args.force = True
    apply.apply_choice(duplicate, candidates.Candidate("c", other), args)
    assert parse_pbtxt((repo / "product_encoder" / "config.pbtxt").read_text()).instance_group[0].count == 2


# ----------------------------------------------------------------------- engine and precision in the sweep


def test_engine_entries_apply_only_to_their_engine():
    from search_build.repository.batching_overrides import stale_entries

    base = build_pipeline("query_intent", engine="openvino", precision="fp32", fuse_text=False)
    legacy = {"product_encoder": {"max_batch_size": 8}, "query_intent_head": {"max_batch_size": 16}}
    assert set(stale_entries(base, legacy, engine_from_overrides=True)) == {"product_encoder"}
    applied = apply_batching(base, legacy)  # programmatic use applies batching-only entries as given
    assert applied.model("product_encoder").batching.max_batch_size == 8
    assert applied.model("query_intent_head").batching.max_batch_size == 16  # Python models: no engine to match
    tuned = {"product_encoder": {"max_batch_size": 8, "engine": "onnxruntime", "precision": "fp32"}}
    asked = stale_entries(base, tuned, engine_from_overrides=False)  # the user chose openvino fp32 for this build
    assert "tuned on onnxruntime fp32" in asked["product_encoder"]
    auto = apply_batching(base, tuned, engine_from_overrides=True).model("product_encoder")  # an auto build
    assert (auto.engine, auto.precision, auto.batching.max_batch_size) == ("onnxruntime", "fp32", 8)


def test_engine_variants_are_gated(tmp_path):
    """query_intent's shared encoder: OpenVINO bf16 fails the heads' gate, so it is never a candidate."""
    from search_backends.graph_engines import openvino_available
    from search_build.repository.writer import write_repository

    if not openvino_available():
        pytest.skip("openvino not installed")
    base = build_pipeline("query_intent", engine="openvino", precision="fp32", fuse_text=False)
    repo = write_repository([base], tmp_path / "repo", "local", progress=lambda _: None)
    messages = []
    variants = candidates.engine_variants(base, repo, messages.append)
    engines = {(c.batching["product_encoder"]["engine"], c.batching["product_encoder"]["precision"]) for c in variants}
    assert engines == {("onnxruntime", "fp32")}
    assert all("engine" not in c.batching["query_intent_head"] for c in variants)
    from search_backends.graph_engines import cpu_supports_bf16

    if cpu_supports_bf16():
        assert any("openvino bf16: not a candidate" in m and "probabilit" in m for m in messages), messages
    assert "onnxruntime-fp32" in variants[0].name


def test_build_skips_overrides_tuned_on_another_engine(tmp_path, capsys):
    from search_tools.cli import main

    path = tmp_path / "batching.json"
    path.write_text(
        json.dumps(
            {
                "models": {
                    "product_encoder": {"max_batch_size": 8},  # written before engines were recorded: ONNX Runtime FP32
                    "product_duplicate_head": {"max_batch_size": 16},
                }
            }
        )
    )
    assert (
        main(
            [
                "build",
                "--pipelines",
                "product_duplicate",
                "--batching-overrides",
                str(path),
                "--out",
                str(tmp_path / "repo"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "batching of product_encoder" in out and "re-run `searchbar sweep`" in out
    encoder = (tmp_path / "repo" / "product_encoder" / "config.pbtxt").read_text()
    head = (tmp_path / "repo" / "product_duplicate_head" / "config.pbtxt").read_text()
    assert "max_batch_size: 64" in encoder and "max_batch_size: 16" in head
