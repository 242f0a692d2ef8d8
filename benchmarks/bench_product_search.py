"""Product-search speed, side by side in one run on this machine.

query_intent (real time): p50/p99 per request at increasing load on our Triton ensemble (perf_analyzer),
and the highest load whose p99 stays under the budget (10 ms); in-process ONNX Runtime and HF PyTorch
on the same model at the same batch sizes.
product_duplicate (offline batches): pairs/s of the batch scoring job through Triton (gRPC async, many
requests in flight) vs in-process ONNX Runtime vs HF PyTorch, same pairs.

    python benchmarks/bench_product_search.py [--levels 1 2 4 8 16] [--pairs 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from search_backends.contracts import product_search as P  # noqa: E402
from search_backends.product_onnx import ProductOnnxModels  # noqa: E402
from search_build.pipelines import build_pipeline  # noqa: E402
from search_build.pipelines.product_search import DEFAULT_CHECKPOINT, exported_models  # noqa: E402
from search_build.training.product_data import make_intent_splits, make_product_pair_splits  # noqa: E402
from search_build.training.product_multitask import load_product_model  # noqa: E402
from search_build.repository.writer import PARITY_FILE, write_repository  # noqa: E402
from search_tools import cli  # noqa: E402
from search_tools.batch_scoring.readers import FIELDS  # noqa: E402
from search_tools.input_data import input_data_path  # noqa: E402
from search_tools.perf import format_table, plot_latency_throughput, run_perf_analyzer, time_batches  # noqa: E402
from search_tools.server import TritonServer  # noqa: E402

BUDGET_MS = 10.0
TRITON_JOB = "triton batch job (32 pairs/request, 8 in flight)"
HF_PAIRS = "HF PyTorch (batch 32)"
# Every level reports its windows whatever their spread (a shared 2-core VM rarely passes perf_analyzer's
# stability check); the sweep does the same.
NOISY_MACHINE_FLAGS = ("--stability-percentage", "1000", "--max-trials", "3")


def run_batch_job(argv: list[str]) -> float:
    """The real offline job (`searchbar score`), as users run it; returns its rows/s."""
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        cli.main(["score", *argv])
    return float(json.loads(printed.getvalue().strip().splitlines()[-1])["rows_per_second"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(os.cpu_count() or 1)

    export_dir = exported_models(DEFAULT_CHECKPOINT)
    onnx = ProductOnnxModels(export_dir)
    openvino = ProductOnnxModels(export_dir, engine="openvino")
    model, config = load_product_model(DEFAULT_CHECKPOINT)
    _, intents = make_intent_splits(0, 2400, 800)
    _, heldout_pairs = make_product_pair_splits(0, 3000, 800)
    queries = [e.text for e in intents]
    pair_rows = [
        dict(zip(FIELDS, (p.a.product_type, p.a.title, p.a.description, p.b.product_type, p.b.title, p.b.description)))
        for p in (heldout_pairs * (args.pairs // len(heldout_pairs) + 1))[: args.pairs]
    ]
    intent_points, duplicate = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        repo = write_repository(
            [build_pipeline(P.INTENT), build_pipeline(P.DUPLICATE)], tmp / "repo", "local", progress=lambda _: None
        )
        # The precision the build's parity gate gave the duplicate encoder (bf16 where the CPU has it and the
        # ROC-AUC gate holds): the in-process peer runs the same.
        served_precision = json.loads((repo / PARITY_FILE).read_text())[P.ENCODER]["precision"]
        print(f"served product_encoder: openvino {served_precision}")
        pairs_file = tmp / "pairs.jsonl"
        pairs_file.write_text("".join(json.dumps(r) + "\n" for r in pair_rows))
        with TritonServer(repo, log_path=tmp / "server.log") as server:
            for level in tqdm(args.levels, desc="query_intent via perf_analyzer"):
                intent_points += run_perf_analyzer(
                    P.INTENT,
                    server.grpc_url,
                    [level],
                    input_data_path(P.INTENT),
                    measurement_ms=int(args.seconds * 1000),
                    label="triton query_intent",
                    extra=NOISY_MACHINE_FLAGS,
                )
            duplicate[TRITON_JOB] = run_batch_job(
                [
                    str(pairs_file),
                    str(tmp / "scores_triton.jsonl"),
                    "--triton-url",
                    server.grpc_url,
                    "--rows-per-request",
                    "32",
                    "--in-flight",
                    "8",
                ]
            )
        duplicate["in-process onnxruntime (batch 32)"] = run_batch_job(
            [
                str(pairs_file),
                str(tmp / "scores_onnx.jsonl"),
                "--onnx-dir",
                str(export_dir),
                "--rows-per-request",
                "32",
                "--in-flight",
                "1",
            ]
        )
        for precision in sorted({"fp32", served_precision}):
            label = f"in-process openvino {precision} (batch 32" + (
                "; the served engine)" if precision == served_precision else ")"
            )
            duplicate[label] = run_batch_job(
                [
                    str(pairs_file),
                    str(tmp / f"scores_ov_{precision}.jsonl"),
                    "--onnx-dir",
                    str(export_dir),
                    "--engine",
                    "openvino",
                    "--precision",
                    precision,
                    "--rows-per-request",
                    "32",
                    "--in-flight",
                    "1",
                ]
            )

    def torch_intent(batch):
        enc = onnx.queries.encode(batch)
        with torch.inference_mode():
            return model.intent_logits(
                *(torch.from_numpy(a) for a in (enc.input_ids, enc.attention_mask, enc.token_type_ids))
            )

    for level in tqdm(args.levels, desc="in-process intent"):
        intent_points.append(
            time_batches("in-process onnxruntime", level, lambda b: onnx.classify_queries(b), queries, args.seconds)
        )
        intent_points.append(
            time_batches(
                "in-process openvino fp32", level, lambda b: openvino.classify_queries(b), queries, args.seconds
            )
        )
        intent_points.append(time_batches("HF PyTorch", level, torch_intent, queries, args.seconds))

    def torch_pairs(label: str, autocast: bool) -> None:
        started = time.perf_counter()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            for i in tqdm(range(0, len(pair_rows), 32), desc=label):
                chunk = pair_rows[i : i + 32]
                enc = onnx.pairs.encode(*[[r[k] for r in chunk] for k in FIELDS])
                model.duplicate_logit(
                    *(torch.from_numpy(a) for a in (enc.input_ids, enc.attention_mask, enc.token_type_ids))
                )
        duplicate[label] = len(pair_rows) / (time.perf_counter() - started)

    torch_pairs(HF_PAIRS, autocast=False)
    torch_pairs("HF PyTorch bf16 autocast (batch 32)", autocast=True)

    baseline = {p.concurrency: p for p in intent_points if p.label == "in-process onnxruntime"}
    print(
        "\nquery_intent: per request (Triton, concurrency N) or per batch of N (in-process); ratios vs in-process ORT"
    )
    print(format_table(intent_points, baseline))
    ok = [p for p in intent_points if p.label == "triton query_intent" and p.p99_ms <= BUDGET_MS]
    best = max(ok, key=lambda p: p.throughput) if ok else None
    print(
        f"\nhighest Triton load with p99 <= {BUDGET_MS:g} ms: "
        + (
            f"concurrency {best.concurrency}, {best.throughput:.0f} queries/s, p99 {best.p99_ms:.2f} ms"
            if best
            else "none at the measured levels"
        )
    )
    print("\nproduct_duplicate pairs/s (same pairs):")
    job, hf = duplicate[TRITON_JOB], duplicate[HF_PAIRS]
    for label, rate in duplicate.items():
        print(f"  {label:56} {rate:8.1f} pairs/s  x{rate / hf:.2f} vs HF PyTorch")
    engine = next(rate for label, rate in duplicate.items() if label.endswith("the served engine)"))
    print(
        f"triton batch job: x{job / hf:.2f} HF PyTorch FP32 (target >= 2), x{job / engine:.2f} the in-process engine "
        f"it serves (openvino {served_precision}; target >= 0.9)"
    )
    (args.out / "product_search.json").write_text(
        json.dumps(
            {
                P.INTENT: [p.as_dict() for p in intent_points],
                "budget_ms": BUDGET_MS,
                "product_duplicate_pairs_per_s": duplicate,
                "product_duplicate_served_precision": served_precision,
            },
            indent=2,
        )
    )
    png = plot_latency_throughput(
        intent_points, args.out / "query_intent.png", "query_intent on this machine", BUDGET_MS
    )
    print(f"\nwrote {args.out / 'product_search.json'} and {png}")


if __name__ == "__main__":
    main()
