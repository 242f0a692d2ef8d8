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
from search_tools import analyzer_config, cost_report
from search_tools.sweep import apply, candidates, choose, command, model_analyzer
from search_tools.perf import LoadPoint, format_table, plot_latency_throughput
from support.sweep import repository_with_configs, two_stage_query_embedding

PIPELINES = ("query_embedding", "query_intent", "product_duplicate", "spell_correct", "search_bar")


# Ensemble inputs each pipeline's issue specifies (checked against the spec once it is registered).
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
    assert (
        quick.model_analyzer["run_config_search_max_model_batch_size"]
        < full.model_analyzer["run_config_search_max_model_batch_size"]
    )
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
    else:  # a Python entry (search_bar): the stages it calls (BLS) or runs in-process are models of the pipeline
        stages = set(entry.bls_calls) or {v for k, v in entry.parameters.items() if k.endswith("_model")}
        assert stages and stages <= models
        assert set(model_analyzer.cpu_only_models(pipeline)) == {
            m.name for m in pipeline.models if not isinstance(m, Ensemble)
        }


def test_spell_inputs_are_misspelled_and_duplicate_pairs_mixed():
    from search_tools.sample_queries import MISSPELLED_MUSIC_QUERIES, MUSIC_QUERIES, PRODUCT_PAIRS

    assert len(set(MISSPELLED_MUSIC_QUERIES) - set(MUSIC_QUERIES)) >= 0.9 * len(MISSPELLED_MUSIC_QUERIES)
    same_type = sum(a[0] == b[0] for a, b in PRODUCT_PAIRS)
    assert same_type == len(PRODUCT_PAIRS) and len({a[1] for a, _ in PRODUCT_PAIRS}) > 10


def _points(label, data):
    return [LoadPoint(label, c, t, p99 / 2, p99 * 0.8, p99, p99 / 2) for c, t, p99 in data]


def test_choice_is_highest_throughput_within_budget():
    results = {
        "default": _points("default", [(1, 100, 8), (4, 300, 20), (8, 500, 60)]),
        "a": _points("a", [(1, 90, 9), (4, 380, 28), (8, 900, 31)]),
        "b": _points("b", [(1, 50, 40)]),
    }
    assert choose.best_under_budget(results["a"], 30).throughput == 380
    assert choose.best_under_budget(results["b"], 30) is None
    assert choose.choose(results, 30) == "a"
    assert choose.choose(results, 5) is None


def test_table_columns_line_up_with_long_candidate_names():
    long = "tokenize x1 b64 d1000, product_encoder x1 b64 d1000, head x1 b64 d1000"
    lines = format_table(_points("default", [(1, 100, 8)]) + _points(long, [(8, 350.5, 30)])).splitlines()
    assert len({len(line) for line in lines}) == 1, lines
    assert lines[-1].startswith(long + " ") and lines[-1].split()[-3:] == ["350.5", "15.00", "30.00"]


def test_queue_delay_variants_and_fallback_grid():
    base = two_stage_query_embedding()
    grid = candidates.fallback_candidates(base, [1, 2], [8])
    assert [c.batching["query_embedding_encoder"]["instance_count"] for c in grid] == [1, 2]
    variants = candidates.with_queue_delays(grid, [0, 1000, 1000], base)
    assert len(variants) == 4
    assert {v.batching["query_embedding_tokenize"]["max_queue_delay_us"] for v in variants} == {0, 1000}


def test_candidates_include_queue_delay_variants_of_the_default_settings():
    base = two_stage_query_embedding()
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
        candidates.DEFAULT_NAME,
        f"tokenize x1 b64 d1000, encoder x1 b64 d1000 {encoder.engine}-{encoder.precision}",
    ]


def test_dry_run_shows_diff_and_apply_keeps_backup(tmp_path):
    base = two_stage_query_embedding()
    repo = repository_with_configs(base, tmp_path / "repo")
    chosen = candidates.Candidate(
        "c", {"query_embedding_encoder": {"max_batch_size": 8, "instance_count": 2, "max_queue_delay_us": 1000}}
    )
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


def test_overrides_file_round_trips_into_the_spec(tmp_path):
    base = two_stage_query_embedding()
    chosen = {"query_embedding_tokenize": {"instance_count": 2, "max_batch_size": 16, "max_queue_delay_us": 0}}
    path = save_overrides(tmp_path / "o.json", {"other_model": {"instance_count": 3}})
    save_overrides(path, chosen, source={"query_embedding": "x"})
    loaded = load_overrides(path)
    assert set(loaded) == {"other_model", "query_embedding_tokenize"}
    rebuilt = apply_batching(base, loaded)
    assert (
        to_pbtxt(model_config(rebuilt.model("query_embedding_tokenize"), "local"))
        == candidates.render_configs(candidates.Candidate("c", chosen).pipeline(base))["query_embedding_tokenize"]
    )
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
    report = {
        "chosen": "encoder x1 b64 d0",
        "chosen_batching": chosen,
        "run_dir": "r",
        "preset": "quick",
        "budget_ms": 30,
        "machine": {"cpus": 2},
        "verification": {
            "beats_default": beats_default,
            "chosen_wins": 2 if beats_default else 1,
            "n_rounds": 2,
            "throughput_ratio": 1.2,
        },
    }
    path = tmp_path / f"sweep_{beats_default}.json"
    path.write_text(json.dumps(report))
    return path


def _apply_args(tmp_path, results, **kw):
    repo = tmp_path / "repo"
    if not repo.exists():
        repository_with_configs(two_stage_query_embedding(), repo)
    defaults = dict(
        pipeline="query_embedding",
        from_results=results,
        apply=True,
        dry_run=False,
        force=False,
        repository=repo,
        overrides=tmp_path / "overrides.json",
    )
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


def test_cost_per_million_and_side_by_side_report(tmp_path, capsys):
    assert cost_report.cost_per_million(100.0, 3.6) == pytest.approx(10.0)
    assert cost_report.cost_per_million(0.0, 3.6) is None
    run = {
        "pipeline": "query_embedding",
        "preset": "quick",
        "budget_ms": 30,
        "chosen": "c",
        "verification": {
            "summary": {
                "default": {"throughput": 200.0, "p99_ms": 20.0},
                "chosen": {"throughput": 400.0, "p99_ms": 25.0},
            }
        },
    }
    untuned = {
        "pipeline": "query_embedding",
        "preset": "quick",
        "budget_ms": 30,
        "chosen": None,
        "candidates": [{"name": "default", "best": None}],
    }
    paths = []
    for i, r in enumerate((run, untuned)):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(r))
    parser = argparse.ArgumentParser()
    cost_report.add_arguments(parser)
    args = parser.parse_args(
        [str(p) for p in paths]
        + ["--price-per-hour", "0.72", "2.5", "--labels", "cpu", "gpu", "--out", str(tmp_path / "cost.md")]
    )
    assert cost_report.run(args) == 0
    md = (tmp_path / "cost.md").read_text()
    assert "| cpu | default | 200.0 | 20.0 | 30 | 0.72 | 1.0000 |" in md
    assert "| cpu | chosen (c) | 400.0 | 25.0 | 30 | 0.72 | 0.5000 |" in md
    assert "| gpu | default | none within budget |" in md


def test_plot_is_written(tmp_path):
    png = plot_latency_throughput(
        _points("default", [(1, 100, 8), (4, 300, 20)]) + _points("c", [(1, 120, 7)]),
        tmp_path / "p.png",
        "t",
        budget_ms=30,
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_loop_guard_fires_only_on_a_run_of_revisits():
    guard = model_analyzer.AnalyzerLoopGuard(limit=3)
    skip = "[Model Analyzer] Existing measurement found for run config. Skipping profile"
    lines = [skip, skip, "[Model Analyzer] Profiling query_embedding_config_5: concurrency=8", skip, skip]
    assert not any(guard.looping(line) for line in lines)  # a new profile resets the count
    assert guard.looping(skip)


def test_overrides_file_checks_engine_fields(tmp_path):
    from search_build.repository.batching_overrides import load_overrides

    path = tmp_path / "batching.json"
    for entry, message in (
        ({"engine": "openvino"}, "precision"),
        ({"engine": "openvino", "precision": "int8"}, "int8"),
        ({"engine": "tvm", "precision": "fp32"}, "engine must be"),
    ):
        path.write_text(json.dumps({"models": {"product_encoder": entry}}))
        with pytest.raises(ValueError, match=message):
            load_overrides(path)
