"""The sweep's reports: sweep.json, sweep.csv and the summary printed at the end (the plots are drawn by perf)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from ..perf import LoadPoint, format_table
from .candidates import DEFAULT_NAME


def machine_info() -> dict:
    import platform

    return {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_1m": os.getloadavg()[0]}


def _csv_row(stage: str, config: str, point: dict, budget_ms: float) -> list:
    latencies = [f"{point[k]:.2f}" for k in ("throughput", "p50_ms", "p90_ms", "p99_ms")]
    return [stage, config, point["concurrency"], *latencies, point["p99_ms"] <= budget_ms]


def write_reports(report: dict, run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "sweep.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    with open(run_dir / "sweep.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["stage", "config", "concurrency", "throughput", "p50_ms", "p90_ms", "p99_ms", "within_budget"])
        budget = report["budget_ms"]
        for c in report["candidates"]:
            w.writerows(_csv_row("sweep", c["name"], p, budget) for p in c["points"])
        for i, r in enumerate(report.get("verification", {}).get("rounds", [])):
            for name, v in r.items():
                w.writerows(_csv_row(f"verify{i + 1}", name, p, budget) for p in v["points"])
    print(f"wrote {run_dir / 'sweep.json'} and {run_dir / 'sweep.csv'}")


def summary_text(report: dict) -> str:
    lines = [
        f"{report['pipeline']} ({report['preset']} preset), p99 budget {report['budget_ms']:g} ms, "
        f"load: concurrency {report['load']['concurrency']}"
    ]
    points = [LoadPoint(**p) for c in report["candidates"] for p in c["points"]]
    lines.append(format_table(points))
    lines.append(f"chosen: {report['chosen'] or 'none (no candidate met the budget)'}")
    v = report.get("verification")
    if v:
        d, c = v["summary"][DEFAULT_NAME], v["summary"]["chosen"]

        def fmt(s):
            return f"{s['throughput']:.1f}/s, p99 {s['p99_ms']:.1f} ms" if s["throughput"] else "nothing under budget"

        lines.append(
            f"verification ({v['n_rounds']} alternating rounds, median best under budget): "
            f"default {fmt(d)}; chosen {fmt(c)}; chosen won {v['chosen_wins']}/{v['n_rounds']} rounds"
            + (f"; x{v['throughput_ratio']:.2f}" if v["throughput_ratio"] else "")
            + ("" if v["beats_default"] else "  -> NOT a measurable win")
        )
    for name, path in report.get("plots", {}).items():
        lines.append(f"plot ({name}): {path}")
    return "\n".join(lines)
