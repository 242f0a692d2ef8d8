"""Query-embedding speed, side by side in one run on this machine.

1. our Triton ensemble (tokenizer -> encoder+pooling) driven by perf_analyzer at several concurrencies;
2. in-process ONNX Runtime on the same graph and tokenizer, batch sizes = the same levels;
3. sentence-transformers ``encode`` on the same checkpoint, same batch sizes.

Prints a table with ratios to the in-process ONNX Runtime baseline and writes JSON + PNG under --out.
    python benchmarks/bench_query_embedding.py --levels 1 2 4 8 16
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

from search_backends.onnx_runner import make_session  # noqa: E402
from search_backends.tokenization import BatchTokenizer  # noqa: E402
from search_build.pipelines import build_pipeline  # noqa: E402
from search_build.repository import write_repository  # noqa: E402
from search_build.sentence_checkpoint import SentenceCheckpoint, default_embedding_checkpoint  # noqa: E402
from search_tools.perf import (INPUT_DATA_DIR, format_table, plot_latency_throughput, run_perf_analyzer,  # noqa: E402
                               time_batches, write_input_data)
from search_tools.sample_queries import MUSIC_QUERIES  # noqa: E402
from search_tools.server import TritonServer  # noqa: E402


def timed_batches(label: str, level: int, fn, seconds: float):
    return time_batches(label, level, fn, MUSIC_QUERIES, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--seconds", type=float, default=4.0, help="measurement time per level and system")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    checkpoint = SentenceCheckpoint.load(default_embedding_checkpoint())
    points = []
    with tempfile.TemporaryDirectory() as tmp:
        repo = write_repository([build_pipeline("query_embedding")], Path(tmp) / "repo", "local", progress=lambda _: None)
        graph = repo / "query_embedding_encoder" / "1" / "model.onnx"
        tokenizer = BatchTokenizer(repo / "query_embedding_tokenize" / "1" / "tokenizer", max_length=128)
        data = write_input_data(({"TEXT": q} for q in MUSIC_QUERIES), INPUT_DATA_DIR / "query_embedding.json")

        with TritonServer(repo, log_path=Path(tmp) / "server.log") as server:
            for level in tqdm(args.levels, desc="triton (perf_analyzer)"):
                points += run_perf_analyzer("query_embedding", server.grpc_url, [level], data,
                                            measurement_ms=int(args.seconds * 1000), label="triton ensemble (local)")

        session = make_session(graph)

        def ort_embed(batch):
            enc = tokenizer.encode(batch)
            return session.run(None, {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask})[0]

        for level in tqdm(args.levels, desc="in-process onnxruntime"):
            points.append(timed_batches("in-process onnxruntime", level, ort_embed, args.seconds))

        from sentence_transformers import SentenceTransformer
        import torch
        model = SentenceTransformer(str(checkpoint.path), device="cpu")
        model.max_seq_length = 128
        with torch.inference_mode():
            for level in tqdm(args.levels, desc="sentence-transformers"):
                points.append(timed_batches("sentence-transformers encode", level,
                                            lambda b: model.encode(b, batch_size=len(b), normalize_embeddings=True),
                                            args.seconds))

    baseline = {p.concurrency: p for p in points if p.label == "in-process onnxruntime"}
    print("\nquery_embedding (all-MiniLM-L6-v2), rows/s and latency per request/batch; ratios vs in-process ONNX Runtime")
    print("(Triton at concurrency N sends N single-query requests at once; in-process systems run batches of N)")
    print(format_table(points, baseline))
    (args.out / "query_embedding.json").write_text(json.dumps([p.as_dict() for p in points], indent=2))
    png = plot_latency_throughput(points, args.out / "query_embedding.png", "query_embedding on this machine")
    print(f"\nwrote {args.out / 'query_embedding.json'} and {png}")


if __name__ == "__main__":
    main()
