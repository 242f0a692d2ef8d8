"""`searchbar soak`: steady load for a bounded time while the memory of every server process is watched.

Starts its own tritonserver on loopback (the repository given, or one pipeline built into a
temporary folder), offers an open-loop request rate below capacity, and samples the resident set
size (RSS) of the tritonserver process and of every Python-backend stub it started. Samples go to
a CSV, a PNG plots them, and the verdict compares each process after warm-up with the end of the run:

    growth = median RSS of the last ``window`` seconds - median RSS of the first ``window`` seconds after warm-up
    FAIL if growth > max(min_growth_mb, max_growth_pct % of the post-warm-up RSS) for any process,
    if any request failed other than by rejection (UNAVAILABLE), or if more than max_rejected_pct % were rejected.

    searchbar soak --pipeline query_embedding --duration 600 --rate 50 --out soak_out
"""

from __future__ import annotations

import asyncio
import csv
import json
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import psutil

from search_backends.contracts.query_embedding import QUERY_EMBEDDING

from .load_test import model_metadata, open_loop, summarise, text_inputs_factory
from .server import TritonServer

STUB_NAME = "triton_python_backend_stub"


def process_label(proc: psutil.Process) -> str | None:
    """'tritonserver' for the server; the model instance name (e.g. ``m_0_0``) for a Python stub."""
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:  # killed, not yet reaped by the server
            return None
        cmd = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    if cmd and cmd[0].endswith(STUB_NAME):
        # argv: stub model.py shm_region shm_default shm_growth parent_pid lib_dir msg_size INSTANCE_NAME ...
        return cmd[8] if len(cmd) > 8 else f"stub-{proc.pid}"
    if cmd and cmd[0].endswith("tritonserver"):
        return "tritonserver"
    return None


def server_processes(server_pid: int) -> dict[str, psutil.Process]:
    """The tritonserver process and its stub children, by label (children only: never other servers' stubs)."""
    root = psutil.Process(server_pid)
    found = {"tritonserver": root}
    for child in root.children(recursive=True):
        label = process_label(child)
        if label and label != "tritonserver":
            found[label] = child
    return found


def rss_mb(processes: dict[str, psutil.Process]) -> dict[str, float]:
    out = {}
    for label, proc in processes.items():
        try:
            out[label] = proc.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            pass
    return out


@dataclass
class Growth:
    process: str
    baseline_mb: float
    final_mb: float
    growth_mb: float
    bound_mb: float
    slope_mb_per_h: float

    @property
    def ok(self) -> bool:
        return self.growth_mb <= self.bound_mb


def judge(
    samples: list[tuple[float, str, float]],
    *,
    warmup_s: float,
    window_s: float,
    max_growth_pct: float = 5.0,
    min_growth_mb: float = 10.0,
) -> list[Growth]:
    """Per-process growth between the first window after warm-up and the last window of the run."""
    end = max(t for t, _, _ in samples)
    if end - warmup_s < 2 * window_s:
        raise ValueError(f"run of {end:.0f}s too short for warm-up {warmup_s:.0f}s and two {window_s:.0f}s windows")
    results = []
    for label in dict.fromkeys(lbl for _, lbl, _ in samples):
        series = [(t, v) for t, lbl, v in samples if lbl == label and t >= warmup_s]
        first = [v for t, v in series if t < warmup_s + window_s]
        last = [v for t, v in series if t > end - window_s]
        if not first or not last:
            continue
        base, final = float(np.median(first)), float(np.median(last))
        ts, vs = np.array([t for t, _ in series]), np.array([v for _, v in series])
        slope = float(np.polyfit(ts, vs, 1)[0] * 3600) if len(series) > 2 else 0.0
        results.append(Growth(label, base, final, final - base, max(min_growth_mb, base * max_growth_pct / 100), slope))
    return results


def plot(samples: list[tuple[float, str, float]], path: Path, warmup_s: float, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.8))
    for label in dict.fromkeys(lbl for _, lbl, _ in samples):
        pts = [(t, v) for t, lbl, v in samples if lbl == label]
        ax.plot([t / 60 for t, _ in pts], [v for _, v in pts], label=label)
    ax.axvline(warmup_s / 60, color="grey", linestyle="--", linewidth=1, label="end of warm-up")
    ax.set_xlabel("minutes")
    ax.set_ylabel("RSS (MiB)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def soak(
    server: TritonServer,
    model: str,
    *,
    duration_s: float,
    rate: float,
    sample_every_s: float,
    out_dir: Path,
    warmup_s: float,
    window_s: float,
    max_growth_pct: float,
    min_growth_mb: float,
    max_rejected_pct: float = 1.0,
) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    samples: list[tuple[float, str, float]] = []
    stop = threading.Event()
    start = time.monotonic()

    def sampler() -> None:
        while True:
            now = time.monotonic() - start
            for label, mb in rss_mb(server_processes(server.process.pid)).items():
                samples.append((now, label, mb))
            if stop.wait(sample_every_s):
                return

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    try:
        make = text_inputs_factory(model_metadata(server.grpc_url, model))
        outcomes = asyncio.run(
            open_loop(
                server.grpc_url,
                model,
                make,
                rate=rate,
                duration_s=duration_s,
                max_requests=int(rate * duration_s) + 1,
                timeout_s=30.0,
            )
        )
    finally:
        stop.set()
        thread.join()
    with open(out_dir / "soak_rss.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["seconds", "process", "rss_mib"])
        w.writerows((f"{t:.1f}", lbl, f"{v:.2f}") for t, lbl, v in samples)
    plot(samples, out_dir / "soak_rss.png", warmup_s, f"soak: {model} at {rate:g} req/s, RSS per process")
    report = make_report(
        model,
        rate,
        duration_s,
        samples,
        summarise(model, rate, outcomes).as_dict(),
        warmup_s=warmup_s,
        window_s=window_s,
        max_growth_pct=max_growth_pct,
        min_growth_mb=min_growth_mb,
        max_rejected_pct=max_rejected_pct,
    )
    (out_dir / "soak_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def make_report(
    model: str,
    rate: float,
    duration_s: float,
    samples,
    load: dict,
    *,
    warmup_s: float,
    window_s: float,
    max_growth_pct: float,
    min_growth_mb: float,
    max_rejected_pct: float,
) -> dict:
    """The verdict: no process grows beyond its bound, no request fails other than by a (rare) fast rejection."""
    growth = judge(
        samples, warmup_s=warmup_s, window_s=window_s, max_growth_pct=max_growth_pct, min_growth_mb=min_growth_mb
    )
    rejected_pct = 100.0 * load["rejected"] / max(load["sent"], 1)
    verdict = (
        bool(growth) and all(g.ok for g in growth) and load["other_errors"] == 0 and rejected_pct <= max_rejected_pct
    )
    return {
        "model": model,
        "duration_s": duration_s,
        "rate": rate,
        "warmup_s": warmup_s,
        "window_s": window_s,
        "bound": f"growth <= max({min_growth_mb:g} MiB, {max_growth_pct:g}% of post-warm-up RSS); "
        f"no errors; rejected <= {max_rejected_pct:g}%",
        "rejected_pct": rejected_pct,
        "load": load,
        "growth": [{**asdict(g), "ok": g.ok} for g in growth],
        "verdict": "PASS" if verdict else "FAIL",
    }


def rejudge(out_dir: Path, **bounds) -> dict:
    """Recompute the verdict of an earlier run from its CSV and report (e.g. with other bounds)."""
    old = json.loads((out_dir / "soak_report.json").read_text())
    with open(out_dir / "soak_rss.csv") as fh:
        samples = [(float(r["seconds"]), r["process"], float(r["rss_mib"])) for r in csv.DictReader(fh)]
    report = make_report(
        old["model"],
        old["rate"],
        old["duration_s"],
        samples,
        old["load"],
        warmup_s=old["warmup_s"],
        window_s=old["window_s"],
        **bounds,
    )
    (out_dir / "soak_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def format_report(report: dict) -> str:
    lines = [
        f"soak {report['model']}: {report['duration_s']:.0f}s at {report['rate']:g} req/s; "
        f"sent {report['load']['sent']}, served {report['load']['served']}, "
        f"served p99 {report['load']['served_p99_ms']:.1f} ms",
        f"{'process':34} {'after warm-up':>13} {'end':>9} {'growth':>9} {'bound':>8} {'slope/h':>9}",
    ]
    for g in report["growth"]:
        lines.append(
            f"{g['process']:34} {g['baseline_mb']:>10.1f} MiB {g['final_mb']:>9.1f} {g['growth_mb']:>+9.1f} "
            f"{g['bound_mb']:>8.1f} {g['slope_mb_per_h']:>+9.1f} {'ok' if g['ok'] else 'GROWING'}"
        )
    lines.insert(
        1, f"rejected {report['rejected_pct']:.2f}% (UNAVAILABLE), other errors {report['load']['other_errors']}"
    )
    lines.append(f"verdict: {report['verdict']} ({report['bound']})")
    return "\n".join(lines)


def add_arguments(parser) -> None:
    parser.add_argument(
        "--repository", type=Path, help="model repository to serve (default: build --pipeline into a temp dir)"
    )
    parser.add_argument("--pipeline", default=QUERY_EMBEDDING, help="pipeline to build and load (its entry model)")
    parser.add_argument("--model", help="model to send requests to (default: the pipeline's entry)")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 10 minutes)")
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second (steady, below capacity)")
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--warmup", type=float, help="seconds ignored at the start (default 20%% of the run)")
    parser.add_argument("--window", type=float, help="seconds averaged at each end (default 10%% of the run)")
    parser.add_argument("--max-growth-pct", type=float, default=5.0)
    parser.add_argument("--min-growth-mb", type=float, default=10.0)
    parser.add_argument(
        "--max-rejected-pct",
        type=float,
        default=1.0,
        help="share of requests that may be rejected (queue timeout on a starved CPU)",
    )
    parser.add_argument(
        "--shed-wait-ms",
        type=int,
        default=0,
        help="build the pipeline with load shedding at this budget (Batching.shed_wait_ms; 0: off)",
    )
    parser.add_argument("--out", type=Path, default=Path("soak_out"))
    parser.add_argument("--rejudge", action="store_true", help="recompute the verdict of the run in --out; no load")
    parser.add_argument("--log", type=Path, help="server log file")


def run(args) -> int:
    from search_build.pipelines import build_pipeline
    from search_build.repository.writer import write_repository

    bounds = dict(
        max_growth_pct=args.max_growth_pct, min_growth_mb=args.min_growth_mb, max_rejected_pct=args.max_rejected_pct
    )
    if args.rejudge:
        report = rejudge(args.out, **bounds)
        print(format_report(report))
        return 0 if report["verdict"] == "PASS" else 1
    pipeline = build_pipeline(args.pipeline, **({"shed_wait_ms": args.shed_wait_ms} if args.shed_wait_ms else {}))
    model = args.model or pipeline.entry
    with tempfile.TemporaryDirectory() as tmp:
        repo = args.repository or write_repository([pipeline], Path(tmp) / "repo", "local", progress=lambda _: None)
        args.out.mkdir(parents=True, exist_ok=True)
        with TritonServer(repo, log_path=args.log or args.out / "tritonserver.log") as server:
            report = soak(
                server,
                model,
                duration_s=args.duration,
                rate=args.rate,
                sample_every_s=args.sample_every,
                out_dir=args.out,
                warmup_s=args.warmup if args.warmup is not None else 0.2 * args.duration,
                window_s=args.window or 0.1 * args.duration,
                **bounds,
            )
    print(format_report(report))
    print(f"wrote {args.out / 'soak_rss.csv'}, {args.out / 'soak_rss.png'}, {args.out / 'soak_report.json'}")
    return 0 if report["verdict"] == "PASS" else 1


if __name__ == "__main__":
    from search_tools.cli import run_as_main

    run_as_main(__spec__.name)
