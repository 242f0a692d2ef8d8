"""Duplicate scoring jobs side by side on this machine: the single-machine job and the Spark job, each with the
in-process engine and through a Triton server, on the same pairs (held-out synthetic product pairs).

Prints pairs/s, pairs/s per core and the cost per million pairs at a given instance price; writes
benchmarks/results/duplicate_jobs.json.
    python benchmarks/bench_duplicate_jobs.py --pairs 4000 --price-per-hour 0.384   # e.g. an m5.2xlarge
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from search_backends.contracts.product_search import DUPLICATE  # noqa: E402
from search_build.pipelines import build_pipeline  # noqa: E402
from search_build.pipelines.product_search import DEFAULT_CHECKPOINT, exported_models  # noqa: E402
from search_build.training.product_data import make_product_pair_splits  # noqa: E402
from search_build.repository.writer import write_repository  # noqa: E402
from search_tools.batch_scoring.readers import FIELDS, ID_COLUMN  # noqa: E402
from search_tools.server import TritonServer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=4000)
    parser.add_argument("--price-per-hour", type=float, default=0.384, help="instance price in USD per hour")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    export_dir = exported_models(DEFAULT_CHECKPOINT)
    _, heldout = make_product_pair_splits(0, 3000, 800)
    rows = [
        {
            ID_COLUMN: f"p{i:06d}",
            **dict(
                zip(
                    FIELDS, (p.a.product_type, p.a.title, p.a.description, p.b.product_type, p.b.title, p.b.description)
                )
            ),
        }
        for i, p in enumerate((heldout * (args.pairs // len(heldout) + 1))[: args.pairs])
    ]
    py = sys.executable
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        import pyarrow as pa
        import pyarrow.parquet as pq

        pairs = tmp / "pairs.parquet"
        pq.write_table(pa.table({k: [r[k] for r in rows] for k in rows[0]}), pairs, row_group_size=1000)
        single = [py, "-m", "search_tools.cli", "score", str(pairs)]
        spark = [py, "-m", "search_tools.cli", "score-spark", str(pairs)]
        results["single-machine job, in-process ONNX Runtime"] = timed(
            single
            + [
                str(tmp / "a.csv"),
                "--onnx-dir",
                str(export_dir),
                "--rows-per-request",
                "32",
                "--in-flight",
                "2",
                "--no-progress",
            ]
        )
        results["Spark local[2], in-process ONNX Runtime (1 thread/worker)"] = timed(
            spark + [str(tmp / "b"), "--onnx-dir", str(export_dir), "--master", "local[2]", "--partitions", "2"]
        )
        repo = write_repository([build_pipeline(DUPLICATE)], tmp / "repo", "local", progress=lambda _: None)
        with TritonServer(repo, log_path=tmp / "server.log") as server:
            results["single-machine job, Triton (32 pairs/request, 8 in flight)"] = timed(
                single + [str(tmp / "c.csv"), "--triton-url", server.grpc_url, "--in-flight", "8", "--no-progress"]
            )
            results["Spark local[2], Triton (32 pairs/request)"] = timed(
                spark + [str(tmp / "d"), "--triton-url", server.grpc_url, "--master", "local[2]", "--partitions", "2"]
            )
    report = {"pairs": args.pairs, "cores": cores, "price_per_hour_usd": args.price_per_hour, "systems": {}}
    print(
        f"\n{args.pairs} pairs on {cores} cores (wall time includes start-up: model load, Spark JVM); "
        f"cost at ${args.price_per_hour}/h"
    )
    print(f"{'system':62} {'pairs/s':>8} {'per core':>9} {'$/M pairs':>10}")
    for label, seconds in results.items():
        rate = args.pairs / seconds
        cost = args.price_per_hour / 3600 / rate * 1e6
        report["systems"][label] = {
            "seconds": round(seconds, 2),
            "pairs_per_s": round(rate, 1),
            "pairs_per_s_per_core": round(rate / cores, 1),
            "usd_per_million_pairs": round(cost, 3),
        }
        print(f"{label:62} {rate:8.1f} {rate / cores:9.1f} {cost:10.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "duplicate_jobs.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out / 'duplicate_jobs.json'}")


if __name__ == "__main__":
    main()
