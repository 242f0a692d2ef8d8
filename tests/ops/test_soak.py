"""A short soak (~45 s): steady load, RSS of server and stubs sampled, verdict from search_tools.soak.

Marked slow and skipped unless selected (``pytest -m slow``); the 10-minute run is ``searchbar soak``.
"""

from __future__ import annotations

import csv

import pytest

from support.reliability import registered, running_server, write_repo
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
        report = soak(
            server,
            "query_embedding",
            duration_s=45,
            rate=30,
            sample_every_s=1.5,
            out_dir=tmp_path / "out",
            warmup_s=10,
            window_s=8,
            max_growth_pct=5,
            min_growth_mb=10,
            max_rejected_pct=1.0,
        )
    labels = {row["process"] for row in csv.DictReader(open(tmp_path / "out" / "soak_rss.csv"))}
    assert labels == {"tritonserver", *(f"{m.name}_0_0" for m in pipeline.models if m.name != pipeline.entry)}
    assert (tmp_path / "out" / "soak_rss.png").stat().st_size > 10_000
    assert report["load"]["sent"] == 45 * 30
    assert report["verdict"] == "PASS", report
