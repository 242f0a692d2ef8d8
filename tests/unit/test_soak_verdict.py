"""A short soak (~45 s): steady load, RSS of server and stubs sampled, verdict from search_tools.soak.

Marked slow and skipped unless selected (``pytest -m slow``); the 10-minute run is ``searchbar soak``.
"""

from __future__ import annotations


import pytest


def test_verdict_catches_a_leak_and_passes_a_plateau():
    from search_tools.soak import judge

    samples = []
    for t in range(0, 600, 5):
        samples.append((float(t), "flat", 170.0 + (4.0 if t > 260 else 0.0)))  # one-off arena growth: fine
        samples.append((float(t), "leak", 50.0 + t * 0.05))  # +30 MiB over the run
    verdict = {g.process: g for g in judge(samples, warmup_s=120, window_s=60)}
    assert verdict["flat"].ok and not verdict["leak"].ok
    assert verdict["leak"].growth_mb > 10 and verdict["leak"].slope_mb_per_h == pytest.approx(180, rel=0.01)
