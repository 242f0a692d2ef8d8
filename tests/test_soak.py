"""A short soak (~45 s): steady load, RSS of server and stubs sampled, verdict from search_tools.soak.

Marked slow and skipped unless selected (``pytest -m slow``); the 10-minute run is ``searchbar soak``.
"""
from __future__ import annotations

import csv

import pytest

from reliability_support import registered, running_server, write_repo
from search_build.pipelines import build_pipeline
from search_tools.soak import soak


@pytest.mark.slow
def test_short_soak_keeps_memory_flat(request, tmp_path):
    if "slow" not in (request.config.getoption("-m") or ""):
        pytest.skip("slow: run with `pytest -m slow` (or `searchbar soak` for the full 10 minutes)")
    if "query_embedding" not in registered():
        pytest.skip("query_embedding not registered")
    pipeline = build_pipeline("query_embedding")
    repo = write_repo([pipeline], tmp_path / "repo")
    with running_server(repo, tmp_path / "tritonserver.log") as server:
        report = soak(server, "query_embedding", duration_s=45, rate=30, sample_every_s=1.5, out_dir=tmp_path / "out",
                      warmup_s=10, window_s=8, max_growth_pct=5, min_growth_mb=10, max_rejected_pct=1.0)
    labels = {row["process"] for row in csv.DictReader(open(tmp_path / "out" / "soak_rss.csv"))}
    assert labels == {"tritonserver", *(f"{m.name}_0_0" for m in pipeline.models if m.name != pipeline.entry)}
    assert (tmp_path / "out" / "soak_rss.png").stat().st_size > 10_000
    assert report["load"]["sent"] == 45 * 30
    assert report["verdict"] == "PASS", report


def test_verdict_catches_a_leak_and_passes_a_plateau():
    from search_tools.soak import judge

    samples = []
    for t in range(0, 600, 5):
        samples.append((float(t), "flat", 170.0 + (4.0 if t > 260 else 0.0)))   # one-off arena growth: fine
        samples.append((float(t), "leak", 50.0 + t * 0.05))                        # +30 MiB over the run
    verdict = {g.process: g for g in judge(samples, warmup_s=120, window_s=60)}
    assert verdict["flat"].ok and not verdict["leak"].ok
    assert verdict["leak"].growth_mb > 10 and verdict["leak"].slope_mb_per_h == pytest.approx(180, rel=0.01)
