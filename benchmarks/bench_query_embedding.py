"""Query-embedding speed, side by side in one run on this machine (load generator on the same cores).

1. our served query_embedding, built as `searchbar build` builds it (local target: OpenVINO at the precision
   the build chose, tokenizer fused into the engine's stub), driven by perf_analyzer over gRPC;
2. in-process OpenVINO on the same graph, precision and tokenizer (the engine the server uses);
3. in-process ONNX Runtime FP32 on the same graph (the engine before OpenVINO);
4. sentence-transformers ``encode`` FP32 on the same checkpoint (what a user runs in their own process).

This machine's speed drifts over minutes (a shared VM: sentence-transformers measured 811 and 567 rows/s at
batch 32 half an hour apart), so every system is measured ``--rounds`` times, interleaved, and each point is
the median round. Ratios are to sentence-transformers at the same level (Triton concurrency N = in-process
batch N). Writes JSON + PNG under --out.

    python benchmarks/bench_query_embedding.py --levels 1 8 32 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tqdm import tqdm  # noqa: E402

from search_backends.contracts import query_embedding as Q  # noqa: E402
from search_backends.graph_engines import GRAPH_FILE, open_engine  # noqa: E402
from search_backends.tokenization import BatchTokenizer  # noqa: E402
from search_build.pipelines import build_pipeline  # noqa: E402
from search_build.repository.writer import served_model, write_repository  # noqa: E402
from search_build.export.sentence_checkpoint import SentenceCheckpoint, default_embedding_checkpoint  # noqa: E402
from search_tools.input_data import write_pipeline_input_data  # noqa: E402
from search_tools.perf import (  # noqa: E402
    LoadPoint,
    format_table,
    plot_latency_throughput,
    run_perf_analyzer,
    time_batches,
)
from search_tools.sample_queries import MUSIC_QUERIES  # noqa: E402
from search_tools.server import TritonServer  # noqa: E402

ST = "sentence-transformers FP32"


def median_point(points: list[LoadPoint]) -> LoadPoint:
    return sorted(points, key=lambda p: p.throughput)[len(points) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=4.0, help="measurement time per level, system and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    import torch
    from sentence_transformers import SentenceTransformer

    checkpoint = SentenceCheckpoint.load(default_embedding_checkpoint())
    st_model = SentenceTransformer(str(checkpoint.path), device="cpu")
    st_model.max_seq_length = 128
    measured: dict[tuple[str, int], list[LoadPoint]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = build_pipeline(Q.QUERY_EMBEDDING)
        repo = write_repository([pipeline], Path(tmp) / "repo", "local", progress=lambda _: None)
        encoder = served_model(pipeline.model(Q.ENCODER), repo)
        served_label = f"served query_embedding ({encoder.engine} {encoder.precision})"
        graph = repo / Q.ENCODER / "1" / GRAPH_FILE
        tokenizer = BatchTokenizer(default_embedding_checkpoint(), max_length=128)
        data = write_pipeline_input_data(Q.QUERY_EMBEDDING)  # the committed perf_analyzer input file
        engines = {
            f"in-process {encoder.engine} {encoder.precision}": open_engine(
                encoder.engine, graph, precision=encoder.precision
            ),
            "in-process onnxruntime FP32": open_engine("onnxruntime", graph),
        }

        def embed_with(engine):
            def embed(batch):
                enc = tokenizer.encode(batch)
                return engine.infer({Q.INPUT_IDS: enc.input_ids, Q.ATTENTION_MASK: enc.attention_mask})[0]

            return embed

        for round_ in range(args.rounds):
            with TritonServer(repo, log_path=Path(tmp) / "server.log") as server:
                for level in tqdm(args.levels, desc=f"round {round_ + 1}: served (perf_analyzer)"):
                    point = run_perf_analyzer(
                        Q.QUERY_EMBEDDING,
                        server.grpc_url,
                        [level],
                        data,
                        measurement_ms=int(args.seconds * 1000),
                        label=served_label,
                    )[0]
                    measured.setdefault((served_label, level), []).append(point)
            for label, engine in engines.items():
                for level in tqdm(args.levels, desc=f"round {round_ + 1}: {label}"):
                    measured.setdefault((label, level), []).append(
                        time_batches(label, level, embed_with(engine), MUSIC_QUERIES, args.seconds)
                    )
            with torch.inference_mode():
                for level in tqdm(args.levels, desc=f"round {round_ + 1}: {ST}"):
                    measured.setdefault((ST, level), []).append(
                        time_batches(
                            ST,
                            level,
                            lambda b: st_model.encode(b, batch_size=len(b), normalize_embeddings=True),
                            MUSIC_QUERIES,
                            args.seconds,
                        )
                    )

    points = [median_point(v) for v in measured.values()]
    baseline = {p.concurrency: p for p in points if p.label == ST}
    print(
        f"\nquery_embedding (all-MiniLM-L6-v2), rows/s and latency per request/batch, median of {args.rounds} "
        f"interleaved rounds; ratios vs {ST}"
    )
    print("(served at concurrency N: N single-query requests in flight; in-process: batches of N)")
    print(format_table(points, baseline))
    spread = {f"{label} @ {level}": [round(p.throughput, 1) for p in v] for (label, level), v in measured.items()}
    (args.out / "query_embedding.json").write_text(
        json.dumps(
            {
                "rounds": args.rounds,
                "points": [p.as_dict() for p in points],
                "throughput_per_round": spread,
                "ratios_vs_sentence_transformers": {
                    f"{p.label} @ {p.concurrency}": round(p.throughput / baseline[p.concurrency].throughput, 3)
                    for p in points
                    if p.label != ST and p.concurrency in baseline
                },
                "spread_note": f"median of {args.rounds}; per-round throughputs in throughput_per_round",
            },
            indent=2,
        )
        + "\n"
    )
    png = plot_latency_throughput(points, args.out / "query_embedding.png", "query_embedding on this machine")
    print(f"\nrounds spread: { {k: (min(v), max(v)) for k, v in spread.items()} }")
    print(f"wrote {args.out / 'query_embedding.json'} and {png}")


if __name__ == "__main__":
    main()
