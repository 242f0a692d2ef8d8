"""Model Analyzer 1.46 for real, on a one-point search of the query_embedding ensemble (~1 min).

Profiles through `searchbar sweep`'s own entry point, then stops a second profile at once to take
the stop path: reports written from the checkpoint, no server left behind.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from search_build.pipelines import build_pipeline
from search_build.repository.writer import write_repository
from search_tools import analyzer_config
from search_tools.sweep import model_analyzer
from search_tools.server import kill_servers_serving


@pytest.fixture(scope="module")
def tiny_profile(tmp_path_factory):
    root = tmp_path_factory.mktemp("model_analyzer")
    pipeline = build_pipeline("query_embedding")
    repo = write_repository([pipeline], root / "repository", "local", progress=lambda _: None)
    cfg = analyzer_config.load("query_embedding", "quick").model_analyzer
    cfg.update(
        run_config_search_max_instance_count=1,
        run_config_search_min_model_batch_size=4,
        run_config_search_max_model_batch_size=4,
        run_config_search_max_concurrency=2,
    )
    cfg["profile_models"]["query_embedding"]["perf_analyzer_flags"]["measurement-interval"] = 1000
    export = root / "export"
    resolved = analyzer_config.resolve_for_this_machine(
        cfg, model_repository=repo, export_dir=export, cpu_only_composing=model_analyzer.cpu_only_models(pipeline)
    )
    messages: list[str] = []
    model_analyzer.run_model_analyzer(resolved, export, messages.append, timeout_s=600)
    return resolved, export, messages


def _by_variant(export: Path, model_repository=None) -> dict:
    return {r.ensemble_variant: r for r in model_analyzer.read_model_analyzer_results(export, model_repository)}


def test_profile_measures_the_default_and_the_searched_point(tiny_profile):
    cfg, export, messages = tiny_profile
    rows = _by_variant(export)
    assert "query_embedding_config_default" in rows and len(rows) == 2, rows.keys()
    searched = next(r for name, r in rows.items() if not name.endswith("_default"))
    spec = build_pipeline("query_embedding")
    # quick search varies instances and max batch size; each model keeps its own queue delay
    assert searched.batching == {
        name: {
            "max_batch_size": 4,
            "instance_count": 1,
            "max_queue_delay_us": spec.model(name).batching.max_queue_delay_us,
        }
        for name in (m.name for m in spec.models if m.name != spec.entry)
    }
    assert all(r.throughput > 0 and r.p99_ms > 0 for r in rows.values())
    assert list((export / "reports" / "summaries").rglob("*.html"))
    assert not any("stopped" in m for m in messages)
    assert kill_servers_serving([cfg["model_repository"], cfg["output_model_repository_path"]]) == []


def test_a_stopped_profile_still_reports_every_measurement_from_its_checkpoint(tiny_profile):
    cfg, export, _ = tiny_profile
    before = _by_variant(export)
    messages: list[str] = []
    model_analyzer.run_model_analyzer(cfg, export, messages.append, timeout_s=0)  # SIGINT on its first line
    assert any("Model Analyzer stopped (past 0 s)" in m for m in messages), messages
    after = _by_variant(export, cfg["model_repository"])  # this profile cleared output_repository first
    assert after.keys() == before.keys()
    assert {k: (r.throughput, r.batching) for k, r in after.items()} == {
        k: (r.throughput, r.batching) for k, r in before.items()
    }
    reports_log = (export / "model_analyzer_reports.log").read_text()
    assert "Profiling query_embedding_config" not in reports_log  # nothing measured again
    assert kill_servers_serving([cfg["model_repository"], cfg["output_model_repository_path"]]) == []
