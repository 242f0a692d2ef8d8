"""Driving perf_analyzer (tritonclient 2.51) and summarising latency samples."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, asdict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .server import server_env

PROJECT_ROOT = Path(__file__).resolve().parents[2]
INPUT_DATA_DIR = PROJECT_ROOT / "analyzer_configs" / "input_data"


def perf_analyzer_binary() -> Path:
    return Path(sys.executable).parent / "perf_analyzer"


@dataclass
class LoadPoint:
    """One measured load level: throughput and client-side latency percentiles (ms)."""

    label: str
    concurrency: int
    throughput: float  # inferences (rows) per second
    p50_ms: float
    p90_ms: float
    p99_ms: float
    avg_ms: float

    def as_dict(self) -> dict:
        return asdict(self)


def write_input_data(rows: Iterable[dict[str, str | int | float]], path: Path) -> Path:
    """perf_analyzer's JSON: one entry per request, every input shape [1] (strings, or numbers such as NUM_BEAMS)."""
    data = [{name: {"content": [value], "shape": [1]} for name, value in row.items()} for row in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"data": data}, ensure_ascii=False, indent=1) + "\n")
    return path


def run_perf_analyzer(
    model: str,
    grpc_url: str,
    concurrencies: Sequence[int],
    input_data: Path,
    *,
    batch_size: int = 1,
    measurement_ms: int = 3000,
    extra: Sequence[str] = (),
    label: str | None = None,
    timeout: float = 600,
) -> list[LoadPoint]:
    """Closed-loop sweep over concurrency; returns one LoadPoint per level (from perf_analyzer's CSV)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "perf.csv"
        cmd = [
            str(perf_analyzer_binary()),
            "-m",
            model,
            "-u",
            grpc_url,
            "-i",
            "grpc",
            "-b",
            str(batch_size),
            "--input-data",
            str(input_data),
            "--concurrency-range",
            "1",
            "--measurement-interval",
            str(measurement_ms),
            "--stability-percentage",
            "50",
            "--max-trials",
            "4",
            "--percentile",
            "99",
            "-f",
            str(report),
            *extra,
        ]
        # perf_analyzer's range syntax is start:end:step; several irregular levels need one run each.
        points: list[LoadPoint] = []
        for c in concurrencies:
            cmd_c = list(cmd)
            cmd_c[cmd_c.index("--concurrency-range") + 1] = str(c)
            proc = subprocess.run(cmd_c, env=server_env(), capture_output=True, text=True, timeout=timeout)
            if proc.returncode != 0:
                raise RuntimeError(
                    f"perf_analyzer failed for {model} at concurrency {c}:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
                )
            points.extend(_parse_csv(report, label or model))
        return points


def _parse_csv(path: Path, label: str) -> list[LoadPoint]:
    points = []
    with open(path) as fh:
        for row in csv.DictReader(fh):
            us = lambda key: float(row[key]) / 1000.0  # noqa: E731 - perf_analyzer reports microseconds
            points.append(
                LoadPoint(
                    label,
                    int(row["Concurrency"]),
                    float(row["Inferences/Second"]),
                    us("p50 latency"),
                    us("p90 latency"),
                    us("p99 latency"),
                    (
                        sum(
                            float(row[k])
                            for k in (
                                "Client Send",
                                "Network+Server Send/Recv",
                                "Server Queue",
                                "Server Compute Input",
                                "Server Compute Infer",
                                "Server Compute Output",
                                "Client Recv",
                            )
                            if k in row
                        )
                        / 1000.0
                    ),
                )
            )
    return points


def summarise(label: str, concurrency: int, latencies_s: Sequence[float], rows: int, wall_s: float) -> LoadPoint:
    ms = np.asarray(latencies_s) * 1000.0
    return LoadPoint(
        label,
        concurrency,
        rows / wall_s,
        float(np.percentile(ms, 50)),
        float(np.percentile(ms, 90)),
        float(np.percentile(ms, 99)),
        float(ms.mean()),
    )


def time_batches(label: str, level: int, fn, items: Sequence, seconds: float) -> LoadPoint:
    """In-process baseline: fn(batch) back to back on batches of ``level`` items for ``seconds``."""
    import time

    latencies, rows, i = [], 0, 0
    fn([items[k % len(items)] for k in range(level)])  # warm-up
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or not latencies:
        batch = [items[(i + k) % len(items)] for k in range(level)]
        t0 = time.perf_counter()
        fn(batch)
        latencies.append(time.perf_counter() - t0)
        rows += level
        i += level
    return summarise(label, level, latencies, rows, time.perf_counter() - start)


def format_table(points: Sequence[LoadPoint], baseline: dict[int, LoadPoint] | None = None) -> str:
    width = max([34, *(len(p.label) for p in points)])  # sweep labels spell out every model's batching
    head = f"{'system':{width}} {'conc/batch':>10} {'rows/s':>9} {'p50 ms':>8} {'p99 ms':>8}" + (
        "  vs baseline" if baseline else ""
    )
    lines = [head, "-" * len(head)]
    for p in points:
        ratio = ""
        if baseline and p.concurrency in baseline and baseline[p.concurrency] is not p:
            b = baseline[p.concurrency]
            ratio = f"  x{p.throughput / b.throughput:.2f} rows/s, p99 x{p.p99_ms / b.p99_ms:.2f}"
        lines.append(
            f"{p.label:{width}} {p.concurrency:>10} {p.throughput:>9.1f} {p.p50_ms:>8.2f} {p.p99_ms:>8.2f}{ratio}"
        )
    return "\n".join(lines)


def plot_load_curves(ax, points: Sequence[LoadPoint]) -> None:
    """One p99-against-throughput line per label on ``ax``, each point marked with its concurrency."""
    for label in dict.fromkeys(p.label for p in points):
        series = [p for p in points if p.label == label]
        ax.plot([p.throughput for p in series], [p.p99_ms for p in series], marker="o", label=label)
        for p in series:
            ax.annotate(
                str(p.concurrency), (p.throughput, p.p99_ms), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )


def plot_latency_throughput(
    points: Sequence[LoadPoint], path: Path, title: str, budget_ms: float | None = None
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    plot_load_curves(ax, points)
    if budget_ms:
        ax.axhline(budget_ms, color="red", linestyle="--", linewidth=1, label=f"p99 budget {budget_ms:g} ms")
    ax.set_xlabel("throughput (rows/s)")
    ax.set_ylabel("p99 latency (ms)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    labels = [p.label for p in points]
    if len(set(labels)) > 3 or max(map(len, labels), default=0) > 40:
        # sweep labels spell out every model's batching: below the axes they hide no point
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1, frameon=False)
        fig.set_size_inches(7.5, 4.8 + 0.2 * (len(set(labels)) + 1))
    else:
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
