"""`searchbar score`: duplicate scoring of a pairs file on one machine, resumable.

    searchbar score pairs.parquet scores.csv --triton-url 127.0.0.1:8001
    searchbar score pairs.jsonl scores.jsonl --onnx-dir artifacts/product_onnx

Input: CSV, JSONL or Parquet with columns a_type, a_title, a_description, b_type, b_title,
b_description (missing values allowed) and optionally ``id``. Output (CSV or JSONL, by extension):
one row per input row, in input order: ``row`` (0-based input row number), ``id`` when the input
has one, and ``score`` = P(duplicate).

An interrupted run started again with the same arguments resumes where its last durable commit left off
(every ``--commit-rows`` rows); it refuses to resume into an output written from other input or by another
model (``--overwrite`` starts again). Transient server errors are retried with exponential backoff.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from search_backends.contracts.product_search import DUPLICATE

from .runner import RunStats, score_file_async
from .scorers import OnnxScorer, TritonScorer


def add_arguments(parser) -> None:
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    backend = parser.add_mutually_exclusive_group(required=True)
    backend.add_argument("--triton-url", help="gRPC address, e.g. 127.0.0.1:8001")
    backend.add_argument(
        "--onnx-dir", type=Path, help="in-process engine on the exported graphs (product_export output)"
    )
    parser.add_argument(
        "--engine",
        choices=("onnxruntime", "openvino"),
        default="onnxruntime",
        help="--onnx-dir's encoder engine",
    )
    parser.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="--onnx-dir's encoder precision: bf16 needs --engine openvino and a CPU with bf16 kernels (the served "
        "local build picks it when the duplicate gate holds: ROC-AUC within 0.002 of FP32)",
    )
    parser.add_argument("--model", default=DUPLICATE)
    parser.add_argument("--rows-per-request", type=int, default=32)
    parser.add_argument("--in-flight", type=int, default=None, help="requests in flight (default 16 Triton, 2 ONNX)")
    parser.add_argument("--commit-rows", type=int, default=1024, help="journal a durable checkpoint this often")
    parser.add_argument("--max-retry-seconds", type=float, default=600.0)
    parser.add_argument("--ready-timeout", type=float, default=120.0)
    parser.add_argument("--overwrite", action="store_true", help="discard an existing output and journal")
    parser.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    async def score() -> RunStats:
        scorer: TritonScorer | OnnxScorer
        if args.triton_url:
            scorer = TritonScorer(args.triton_url, args.model)
            await scorer.wait_ready(args.ready_timeout)
        else:
            if args.precision == "bf16" and args.engine != "openvino":
                raise SystemExit("--precision bf16 runs on OpenVINO: add --engine openvino")
            scorer = OnnxScorer(args.onnx_dir, engine=args.engine, precision=args.precision)
        try:
            return await score_file_async(
                args.input,
                args.output,
                scorer,
                rows_per_request=args.rows_per_request,
                in_flight=args.in_flight or (16 if args.triton_url else 2),
                commit_rows=args.commit_rows,
                max_retry_s=args.max_retry_seconds,
                overwrite=args.overwrite,
                progress=not args.no_progress,
            )
        finally:
            await scorer.close()

    stats = asyncio.run(score())
    print(
        json.dumps(
            {
                "rows_scored": stats.rows,
                "resumed_from_row": stats.resumed_from,
                "retries": stats.retries,
                "seconds": round(stats.seconds, 2),
                "rows_per_second": round(stats.rows_per_second, 1),
                "output": str(args.output),
            }
        )
    )
    return 0
