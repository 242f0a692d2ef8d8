"""Sweep configs, input data, choosing, applying and costing (no server: fast)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from search_build.repository.batching_overrides import apply_batching, load_overrides, save_overrides
from search_build.repository.configs import model_config, parse_pbtxt, to_pbtxt
from search_build.pipelines import build_pipeline, pipeline_names
from search_build.repository.spec import Ensemble
from search_tools import analyzer_config, cost_report, input_data
from search_tools.sweep import apply, candidates, choose, command, model_analyzer
from search_tools.perf import LoadPoint, format_table, plot_latency_throughput
from search_backends.contracts.product_search import PAIR_FIELDS

PIPELINES = ("query_embedding", "query_intent", "product_duplicate", "spell_correct", "search_bar")
# Ensemble inputs each pipeline's issue specifies (checked against the spec once it is registered).
EXPECTED_INPUTS = {
    "query_embedding": {"TEXT"}, "query_intent": {"TEXT"}, "spell_correct": {"TEXT"}, "search_bar": {"TEXT"},
    "product_duplicate": set(PAIR_FIELDS),
}


def _registered(name):
    if name not in pipeline_names():
        pytest.skip(f"pipeline {name} not registered yet")
    return build_pipeline(name)


@pytest.mark.parametrize("preset", analyzer_config.PRESETS)
@pytest.mark.parametrize("name", PIPELINES)
def test_analyzer_config_parses_with_budget_and_quick_search(name, preset):
    cfg = analyzer_config.load(name, preset)
    ma = cfg.model_analyzer
    assert cfg.entry == name and ma["triton_launch_mode"] == "local"
    assert ma["run_config_search_mode"] == "quick", "Model Analyzer profiles ensembles in quick mode only"
    assert cfg.budget_ms > 0 and ma["profile_models"][name]["objectives"] == {"perf_throughput": 10}
    assert cfg.input_data.exists()
    assert ma["run_config_search_max_instance_count"] >= 2 and cfg.perf_sweep.concurrency
    if name == "query_intent":
        assert cfg.budget_ms == 10
    if name == "spell_correct":
        assert cfg.budget_ms == 25


def test_quick_preset_is_smaller_than_full():
    quick, full = (analyzer_config.load("query_embedding", p) for p in ("quick", "full"))
    assert quick.model_analyzer["run_config_search_max_model_batch_size"] < full.model_analyzer["run_config_search_max_model_batch_size"]
    assert len(quick.perf_sweep.concurrency) < len(full.perf_sweep.concurrency)
    # quick must finish one pipeline in < 10 min: Model Analyzer gets a bounded share of it
    assert quick.perf_sweep.analyzer_time_limit_s <= 240 < full.perf_sweep.analyzer_time_limit_s


@pytest.mark.parametrize("name", PIPELINES)
def test_analyzer_config_names_real_models(name):
    pipeline = _registered(name)
    ma = analyzer_config.load(name).model_analyzer
    models = {m.name for m in pipeline.models}
    entry = pipeline.model(pipeline.entry)
    assert pipeline.entry == name
    assert set(ma.get("cpu_only_composing_models", [])) <= models
    assert set(ma.get("bls_composing_models", [])) <= models
    if isinstance(entry, Ensemble):
        assert set(model_analyzer.cpu_only_models(pipeline)) == models - {name}
    else:  # a BLS entry (search_bar): its stages are the models it calls, all in the pipeline
        assert entry.bls_calls and set(entry.bls_calls) <= models
        assert set(model_analyzer.cpu_only_models(pipeline)) == {m.name for m in pipeline.models if not isinstance(m, Ensemble)}


def test_resolved_config_points_at_this_machine(tmp_path):
    cfg = analyzer_config.load("query_embedding")
    resolved = analyzer_config.resolve_for_this_machine(cfg.model_analyzer, model_repository=tmp_path,
                                                        export_dir=tmp_path / "ma", cpu_only_composing=["x"])
    assert Path(resolved["triton_server_path"]).exists()
    assert (Path(resolved["triton_server_flags"]["backend_directory"]) / "python" / "triton_python_backend_stub").exists()
    assert "nvidia_pytriton.libs" in resolved["triton_server_environment"]["LD_LIBRARY_PATH"]
    assert Path(resolved["profile_models"]["query_embedding"]["perf_analyzer_flags"]["input-data"]).is_absolute()
    assert resolved["cpu_only_composing_models"] == ["x"] and cfg.model_analyzer["model_repository"] == "model_repository"
    ports = {int(resolved[k].rsplit(":", 1)[-1].split("/")[0])
             for k in ("triton_http_endpoint", "triton_grpc_endpoint", "triton_metrics_url")}
    assert len(ports) == 3 and not ports & {8000, 8001, 8002}
    assert all(resolved[k].startswith(("127.0.0.1:", "http://127.0.0.1:"))
               for k in ("triton_http_endpoint", "triton_grpc_endpoint", "triton_metrics_url"))


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


def test_spell_inputs_are_misspelled_and_duplicate_pairs_mixed():
    from search_tools.sample_queries import MISSPELLED_MUSIC_QUERIES, MUSIC_QUERIES, PRODUCT_PAIRS

    assert len(set(MISSPELLED_MUSIC_QUERIES) - set(MUSIC_QUERIES)) >= 0.9 * len(MISSPELLED_MUSIC_QUERIES)
    same_type = sum(a[0] == b[0] for a, b in PRODUCT_PAIRS)
    assert same_type == len(PRODUCT_PAIRS) and len({a[1] for a, _ in PRODUCT_PAIRS}) > 10


def _points(label, data):
    return [LoadPoint(label, c, t, p99 / 2, p99 * 0.8, p99, p99 / 2) for c, t, p99 in data]


def test_choice_is_highest_throughput_within_budget():
    results = {"default": _points("default", [(1, 100, 8), (4, 300, 20), (8, 500, 60)]),
               "a": _points("a", [(1, 90, 9), (4, 380, 28), (8, 900, 31)]),
               "b": _points("b", [(1, 50, 40)])}
    assert choose.best_under_budget(results["a"], 30).throughput == 380
    assert choose.best_under_budget(results["b"], 30) is None
    assert choose.choose(results, 30) == "a"
    assert choose.choose(results, 5) is None


def test_table_columns_line_up_with_long_candidate_names():
    long = "tokenize x1 b64 d1000, product_encoder x1 b64 d1000, head x1 b64 d1000"
    lines = format_table(_points("default", [(1, 100, 8)]) + _points(long, [(8, 350.5, 30)])).splitlines()
    assert len({len(line) for line in lines}) == 1, lines
    assert lines[-1].startswith(long + " ") and lines[-1].split()[-3:] == ["350.5", "15.00", "30.00"]


def _query_embedding():
    """The two-stage shape (tokenizer stub + engine), as triton-cpu/gpu serve it: the sweep's mechanics need two
    models to tune; the local default fuses them (spec.FusedTokenizer)."""
    return build_pipeline("query_embedding", fuse_tokenizer=False)


def test_queue_delay_variants_and_fallback_grid():
    base = _query_embedding()
    grid = candidates.fallback_candidates(base, [1, 2], [8])
    assert [c.batching["query_embedding_encoder"]["instance_count"] for c in grid] == [1, 2]
    variants = candidates.with_queue_delays(grid, [0, 1000, 1000], base)
    assert len(variants) == 4
    assert {v.batching["query_embedding_tokenize"]["max_queue_delay_us"] for v in variants} == {0, 1000}


def test_candidates_include_queue_delay_variants_of_the_default_settings():
    base = _query_embedding()
    (proposed,) = candidates.fallback_candidates(base, [2], [8])
    cands = candidates.candidate_list(base, [proposed], [0, 1000], max_candidates=3)
    assert cands[0].name == candidates.DEFAULT_NAME and cands[0].batching == candidates.tuned_batching(base)
    default_settings = {m: (b["instance_count"], b["max_batch_size"]) for m, b in cands[0].batching.items()}
    rest = cands[1:]
    assert len(rest) == 3 and len({c.name for c in cands}) == 4
    # first the default's own instances/batch sizes at each delay, then the proposed settings
    for c, delay in zip(rest[:2], (0, 1000)):
        assert {m: (b["instance_count"], b["max_batch_size"]) for m, b in c.batching.items()} == default_settings
        assert {b["max_queue_delay_us"] for b in c.batching.values()} == {delay}
    assert rest[2].batching["query_embedding_encoder"]["instance_count"] == 2
    # a variant equal to the default is not measured twice
    zero = apply_batching(base, {m: {"max_queue_delay_us": 0} for m in cands[0].batching})
    encoder = zero.model("query_embedding_encoder")
    assert [c.name for c in candidates.candidate_list(zero, [], [0, 1000], 4)] == [
        candidates.DEFAULT_NAME, f"tokenize x1 b64 d1000, encoder x1 b64 d1000 {encoder.engine}-{encoder.precision}"]


def _repo_with_configs(pipeline, root: Path) -> Path:
    for name, text in candidates.render_configs(pipeline).items():
        (root / name).mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(text)
    return root


def test_dry_run_shows_diff_and_apply_keeps_backup(tmp_path):
    base = _query_embedding()
    repo = _repo_with_configs(base, tmp_path / "repo")
    chosen = candidates.Candidate("c", {"query_embedding_encoder": {"max_batch_size": 8, "instance_count": 2,
                                                               "max_queue_delay_us": 1000}})
    path = repo / "query_embedding_encoder" / "config.pbtxt"
    before = path.read_text()

    changes = apply.apply_to_repository(chosen.pipeline(base), repo, dry_run=True)
    assert {c.model for c in changes} == {"query_embedding_encoder", "query_embedding"}  # ensemble clamped to 8
    assert "+  count: 2" in next(c.diff for c in changes if c.model == "query_embedding_encoder")
    assert path.read_text() == before and not list(repo.rglob("*.bak"))

    changes = apply.apply_to_repository(chosen.pipeline(base), repo, dry_run=False, stamp="t1")
    assert (repo / "query_embedding_encoder" / "config.pbtxt.t1.bak").read_text() == before
    written = parse_pbtxt(path.read_text())
    expected = chosen.pipeline(base)
    assert written == model_config(expected.model("query_embedding_encoder"), "local")
    assert written.instance_group[0].count == 2 and written.max_batch_size == 8
    assert written.dynamic_batching.max_queue_delay_microseconds == 1000
    assert parse_pbtxt((repo / "query_embedding" / "config.pbtxt").read_text()).max_batch_size == 8
    assert apply.apply_to_repository(expected, repo, dry_run=False, stamp="t2") == []  # idempotent


def test_apply_refuses_a_repository_without_the_pipeline(tmp_path):
    with pytest.raises(FileNotFoundError, match="searchbar build"):
        apply.apply_to_repository(_query_embedding(), tmp_path, dry_run=True)


def test_overrides_file_round_trips_into_the_spec(tmp_path):
    base = _query_embedding()
    chosen = {"query_embedding_tokenize": {"instance_count": 2, "max_batch_size": 16, "max_queue_delay_us": 0}}
    path = save_overrides(tmp_path / "o.json", {"other_model": {"instance_count": 3}})
    save_overrides(path, chosen, source={"query_embedding": "x"})
    loaded = load_overrides(path)
    assert set(loaded) == {"other_model", "query_embedding_tokenize"}
    rebuilt = apply_batching(base, loaded)
    assert to_pbtxt(model_config(rebuilt.model("query_embedding_tokenize"), "local")) == \
        candidates.render_configs(candidates.Candidate("c", chosen).pipeline(base))["query_embedding_tokenize"]
    assert rebuilt.model("query_embedding_encoder") == base.model("query_embedding_encoder")
    path.write_text(json.dumps({"models": {"m": {"max_batch": 4}}}))
    with pytest.raises(ValueError, match="unknown batching fields"):
        load_overrides(path)


def test_build_accepts_batching_overrides_flag():
    from search_build.repository import build_command

    parser = argparse.ArgumentParser()
    build_command.add_arguments(parser)
    assert parser.parse_args(["--batching-overrides", "x.json"]).batching_overrides == Path("x.json")
    assert parser.parse_args(["--no-batching-overrides"]).no_batching_overrides


def test_build_reads_the_sweep_result_for_the_local_target_only(tmp_path):
    from search_build.repository.batching_overrides import overrides_for_build

    tuned = tmp_path / "batching_overrides.json"
    assert overrides_for_build(None, "local", tuned=tuned) is None  # no sweep applied yet
    save_overrides(tuned, {"query_embedding_encoder": {"max_queue_delay_us": 0}})
    assert overrides_for_build(None, "local", tuned=tuned) == tuned
    assert overrides_for_build(None, "triton-gpu", tuned=tuned) is None  # tuned on another machine kind
    assert overrides_for_build("x.json", "triton-gpu", tuned=tuned) == Path("x.json")
    assert overrides_for_build(None, "local", disabled=True, tuned=tuned) is None


def _sweep_report(tmp_path, beats_default):
    chosen = {"query_embedding_encoder": {"max_batch_size": 64, "instance_count": 1, "max_queue_delay_us": 0}}
    report = {"chosen": "encoder x1 b64 d0", "chosen_batching": chosen, "run_dir": "r", "preset": "quick",
              "budget_ms": 30, "machine": {"cpus": 2},
              "verification": {"beats_default": beats_default, "chosen_wins": 2 if beats_default else 1,
                               "n_rounds": 2, "throughput_ratio": 1.2}}
    path = tmp_path / f"sweep_{beats_default}.json"
    path.write_text(json.dumps(report))
    return path


def _apply_args(tmp_path, results, **kw):
    repo = tmp_path / "repo"
    if not repo.exists():
        _repo_with_configs(_query_embedding(), repo)
    defaults = dict(pipeline="query_embedding", from_results=results, apply=True, dry_run=False, force=False,
                    repository=repo, overrides=tmp_path / "overrides.json")
    return argparse.Namespace(**{**defaults, **kw})


def test_apply_from_results_needs_a_verified_win_or_force(tmp_path, capsys):
    config = tmp_path / "repo" / "query_embedding_encoder" / "config.pbtxt"
    args = _apply_args(tmp_path, _sweep_report(tmp_path, beats_default=False))
    assert command.run(args) == 0
    assert "not applying" in capsys.readouterr().out and not args.overrides.exists()
    assert parse_pbtxt(config.read_text()).dynamic_batching.max_queue_delay_microseconds == 500

    assert command.run(_apply_args(tmp_path, _sweep_report(tmp_path, beats_default=True))) == 0
    assert parse_pbtxt(config.read_text()).dynamic_batching.max_queue_delay_microseconds == 0
    assert list(config.parent.glob("config.pbtxt.*.bak"))
    saved = json.loads(args.overrides.read_text())
    assert saved["models"]["query_embedding_encoder"]["max_queue_delay_us"] == 0
    assert saved["sources"]["query_embedding"]["verification_wins"] == "2/2"


def test_model_analyzer_results_become_candidates(tmp_path):
    base = _query_embedding()
    out = tmp_path / "ma"
    (out / "results").mkdir(parents=True)
    variants = {"query_embedding_tokenize_config_0": (base.model("query_embedding_tokenize"), 2, 4),
                "query_embedding_encoder_config_1": (base.model("query_embedding_encoder"), 1, 16)}
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
        'query_embedding_encoder_config_1","2:CPU,1:CPU","4,16",Yes,335.0,24.4\n')
    for variant in ("a_default", "b_default"):  # the default variants: the spec's own configs
        (out / "output_repository" / variant).mkdir(parents=True)
        (out / "output_repository" / variant / "config.pbtxt").write_text(
            to_pbtxt(model_config(base.model("query_embedding_encoder"), "local")))
    rows = model_analyzer.read_model_analyzer_results(out)
    assert [r.satisfies for r in rows] == [False, True] and rows[1].p99_ms == 24.4
    (c,) = model_analyzer.analyzer_candidates(rows, base, limit=3)
    assert c.batching["query_embedding_tokenize"] == {"max_batch_size": 4, "instance_count": 2, "max_queue_delay_us": 100}
    assert c.batching["query_embedding_encoder"]["max_batch_size"] == 16


def test_cost_per_million_and_side_by_side_report(tmp_path, capsys):
    assert cost_report.cost_per_million(100.0, 3.6) == pytest.approx(10.0)
    assert cost_report.cost_per_million(0.0, 3.6) is None
    run = {"pipeline": "query_embedding", "preset": "quick", "budget_ms": 30, "chosen": "c",
           "verification": {"summary": {"default": {"throughput": 200.0, "p99_ms": 20.0},
                                        "chosen": {"throughput": 400.0, "p99_ms": 25.0}}}}
    untuned = {"pipeline": "query_embedding", "preset": "quick", "budget_ms": 30, "chosen": None,
               "candidates": [{"name": "default", "best": None}]}
    paths = []
    for i, r in enumerate((run, untuned)):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(r))
    parser = argparse.ArgumentParser()
    cost_report.add_arguments(parser)
    args = parser.parse_args([str(p) for p in paths] + ["--price-per-hour", "0.72", "2.5", "--labels", "cpu", "gpu",
                                                         "--out", str(tmp_path / "cost.md")])
    assert cost_report.run(args) == 0
    md = (tmp_path / "cost.md").read_text()
    assert "| cpu | default | 200.0 | 20.0 | 30 | 0.72 | 1.0000 |" in md
    assert "| cpu | chosen (c) | 400.0 | 25.0 | 30 | 0.72 | 0.5000 |" in md
    assert "| gpu | default | none within budget |" in md


def test_plot_is_written(tmp_path):
    png = plot_latency_throughput(_points("default", [(1, 100, 8), (4, 300, 20)]) + _points("c", [(1, 120, 7)]),
                                  tmp_path / "p.png", "t", budget_ms=30)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_bls_composing_models_come_from_the_spec(tmp_path):
    from search_build.pipelines.spell_correct import spell_correct_pipeline

    assert model_analyzer.bls_composing_models(build_pipeline("spell_correct")) == []  # engine_mode "inprocess"
    assert model_analyzer.bls_composing_models(spell_correct_pipeline(engine_mode="bls")) == ["spell_decoder", "spell_encoder"]
    cfg = dict(analyzer_config.load("spell_correct").model_analyzer, bls_composing_models=["stale"])
    kw = dict(model_repository=tmp_path, export_dir=tmp_path / "ma")
    assert "bls_composing_models" not in analyzer_config.resolve_for_this_machine(cfg, bls_composing=[], **kw)
    assert analyzer_config.resolve_for_this_machine(cfg, bls_composing=["b"], **kw)["bls_composing_models"] == ["b"]


def test_applying_a_shared_model_names_the_other_pipelines():
    shared = apply.shared_models(build_pipeline("query_intent", fuse_text=False), ["product_encoder", "query_intent_head"])
    assert shared == {"product_encoder": ["product_duplicate"]}
    assert apply.shared_models(build_pipeline("query_embedding"), ["query_embedding_encoder"]) == {}


def test_loop_guard_fires_only_on_a_run_of_revisits():
    guard = model_analyzer.AnalyzerLoopGuard(limit=3)
    skip = "[Model Analyzer] Existing measurement found for run config. Skipping profile"
    lines = [skip, skip, "[Model Analyzer] Profiling query_embedding_config_5: concurrency=8", skip, skip]
    assert not any(guard.looping(line) for line in lines)  # a new profile resets the count
    assert guard.looping(skip)


def test_reports_only_config_is_a_one_point_search_on_the_same_checkpoint(tmp_path):
    cfg = analyzer_config.resolve_for_this_machine(analyzer_config.load("query_embedding", "quick").model_analyzer,
                                                   model_repository=tmp_path, export_dir=tmp_path / "ma")
    again = model_analyzer.reports_only_config(cfg)
    assert again["run_config_search_max_instance_count"] == 1
    assert again["run_config_search_max_model_batch_size"] == cfg["run_config_search_min_model_batch_size"]
    assert again["checkpoint_directory"] == cfg["checkpoint_directory"] and again["export_path"] == cfg["export_path"]
    assert again["output_model_repository_path"] != cfg["output_model_repository_path"]  # variants read back intact
    assert cfg["run_config_search_max_instance_count"] == 2  # the original is untouched


def test_smaller_batches_become_preferred_sizes_so_requests_keep_their_rows():
    base = _query_embedding()
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
    assert all(b["max_batch_size"] == 64 for c in candidates.candidate_list(base, [proposed], [0], 3) for b in c.batching.values())
    assert candidates.keep_request_rows(candidates.Candidate("d", candidates.tuned_batching(base)), base).name == "d"


def test_apply_refuses_to_retune_a_model_another_pipeline_was_tuned_with(tmp_path, capsys, monkeypatch):
    # On triton-cpu/gpu both product ensembles serve the one product_encoder (on local, query_intent has its own
    # fused copy, so nothing is shared there): the sharing those targets have.
    monkeypatch.setattr(apply, "shared_models", lambda base, models: {"product_encoder": ["query_intent"]}
                        if base.name == "product_duplicate" else {"product_encoder": ["product_duplicate"]})
    intent_choice = {"product_encoder": {"instance_count": 1, "max_batch_size": 64, "max_queue_delay_us": 0,
                                         "preferred_batch_sizes": []}}
    overrides = save_overrides(tmp_path / "overrides.json", intent_choice, source={"query_intent": {"candidate": "d0"}})
    duplicate = build_pipeline("product_duplicate")
    same = {"product_encoder": dict(intent_choice["product_encoder"])}
    assert apply.tuning_conflicts(duplicate, same, overrides) == []
    other = {"product_encoder": {**intent_choice["product_encoder"], "instance_count": 2, "preferred_batch_sizes": [4]}}
    (clash,) = apply.tuning_conflicts(duplicate, other, overrides)
    assert "product_encoder was tuned for query_intent" in clash and "x2 b64 p4 d0" in clash
    # re-tuning the pipeline that owns the setting is no conflict
    assert apply.tuning_conflicts(build_pipeline("query_intent", fuse_text=False), other, overrides) == []

    repo = _repo_with_configs(duplicate, tmp_path / "repo")
    before = (repo / "product_encoder" / "config.pbtxt").read_text()
    args = argparse.Namespace(pipeline="product_duplicate", apply=True, dry_run=False, force=False,
                              repository=repo, overrides=overrides)
    assert apply.apply_choice(duplicate, candidates.Candidate("c", other), args) == 0
    assert "not applying" in capsys.readouterr().out
    assert (repo / "product_encoder" / "config.pbtxt").read_text() == before
    assert json.loads(overrides.read_text())["models"]["product_encoder"] == intent_choice["product_encoder"]
    args.force = True
    apply.apply_choice(duplicate, candidates.Candidate("c", other), args)
    assert parse_pbtxt((repo / "product_encoder" / "config.pbtxt").read_text()).instance_group[0].count == 2


# ----------------------------------------------------------------------- engine and precision in the sweep

def test_engine_entries_apply_only_to_their_engine():
    from search_build.repository.batching_overrides import apply_batching, stale_entries

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


def test_overrides_file_checks_engine_fields(tmp_path):
    from search_build.repository.batching_overrides import load_overrides

    path = tmp_path / "batching.json"
    for entry, message in (({"engine": "openvino"}, "precision"), ({"engine": "openvino", "precision": "int8"}, "int8"),
                           ({"engine": "tvm", "precision": "fp32"}, "engine must be")):
        path.write_text(json.dumps({"models": {"product_encoder": entry}}))
        with pytest.raises(ValueError, match=message):
            load_overrides(path)


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
    path.write_text(json.dumps({"models": {
        "product_encoder": {"max_batch_size": 8},  # written before engines were recorded: ONNX Runtime FP32
        "product_duplicate_head": {"max_batch_size": 16}}}))
    assert main(["build", "--pipelines", "product_duplicate", "--batching-overrides", str(path),
                 "--out", str(tmp_path / "repo")]) == 0
    out = capsys.readouterr().out
    assert "batching of product_encoder" in out and "re-run `searchbar sweep`" in out
    encoder = (tmp_path / "repo" / "product_encoder" / "config.pbtxt").read_text()
    head = (tmp_path / "repo" / "product_duplicate_head" / "config.pbtxt").read_text()
    assert "max_batch_size: 64" in encoder and "max_batch_size: 16" in head
