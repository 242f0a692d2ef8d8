"""The choice among measured candidates and its check: default and chosen served again in alternating rounds."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Sequence

from search_build.repository.spec import Pipeline

from .. import analyzer_config
from ..perf import LoadPoint
from .candidates import DEFAULT_NAME, Candidate
from .measure import measure


def best_under_budget(points: Sequence[LoadPoint], budget_ms: float) -> LoadPoint | None:
    ok = [p for p in points if p.p99_ms <= budget_ms]
    return max(ok, key=lambda p: p.throughput) if ok else None


def choose(results: dict[str, list[LoadPoint]], budget_ms: float) -> str | None:
    """Name of the candidate with the highest throughput under the budget (None if none meets it)."""
    scored = {name: best_under_budget(points, budget_ms) for name, points in results.items()}
    scored = {name: p for name, p in scored.items() if p is not None}
    return max(scored, key=lambda name: scored[name].throughput) if scored else None


def verify(
    base: Pipeline,
    chosen: Candidate,
    base_repository: Path,
    work_dir: Path,
    input_data: Path,
    settings: analyzer_config.PerfSweepSettings,
    budget_ms: float,
    log,
) -> dict:
    """Default and chosen served alternately ``verify_rounds`` times under the same load."""
    rounds = []
    configs = {DEFAULT_NAME: base, "chosen": chosen.pipeline(base)}
    for r in range(settings.verify_rounds):
        order = list(configs) if r % 2 == 0 else list(reversed(configs))
        entry = {}
        for name in order:
            log(f"verify round {r + 1}/{settings.verify_rounds}: {name}")
            points = measure(
                configs[name],
                f"{name} (round {r + 1})",
                base_repository,
                work_dir / f"verify_{r}_{name}",
                input_data,
                settings,
            )
            best = best_under_budget(points, budget_ms)
            entry[name] = {"points": [p.as_dict() for p in points], "best": best.as_dict() if best else None}
        rounds.append(entry)

    def median_best(name: str, key: str) -> float | None:
        vals = [r[name]["best"][key] for r in rounds if r[name]["best"]]
        return statistics.median(vals) if vals else None

    def throughput(r: dict, name: str) -> float:
        return r[name]["best"]["throughput"] if r[name]["best"] else 0.0

    wins = sum(throughput(r, "chosen") > throughput(r, DEFAULT_NAME) for r in rounds)
    summary = {
        name: {
            "throughput": median_best(name, "throughput"),
            "p99_ms": median_best(name, "p99_ms"),
            "concurrency": median_best(name, "concurrency"),
        }
        for name in configs
    }
    d, c = summary[DEFAULT_NAME]["throughput"], summary["chosen"]["throughput"]
    return {
        "rounds": rounds,
        "summary": summary,
        "chosen_wins": wins,
        "n_rounds": len(rounds),
        "throughput_ratio": (c / d) if c and d else None,
        "beats_default": bool(c) and wins == len(rounds) and (not d or c > d),
    }
