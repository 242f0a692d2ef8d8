"""`searchbar demo`: the README's main job: build, serve, and query every pipeline with examples."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from .server import TritonServer

EXAMPLES = {
    "query_embedding": ["taylor swift love story", "lofi beats to study to", "jazz piano for dinner"],
}


def add_arguments(parser) -> None:
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--pipelines", nargs="+", default=None, help="default: every pipeline with examples")
    parser.add_argument("--skip-build", action="store_true")


def _strings(name: str, values: list[str]) -> grpcclient.InferInput:
    array = np.array([[v.encode()] for v in values], dtype=np.object_)
    t = grpcclient.InferInput(name, list(array.shape), "BYTES")
    t.set_data_from_numpy(array)
    return t


def show_query_embedding(client) -> None:
    texts = EXAMPLES["query_embedding"]
    emb = client.infer("query_embedding", [_strings("TEXT", texts)]).as_numpy("EMBEDDING")
    sims = emb @ emb.T
    for text, vec in zip(texts, emb):
        print(f"  {text!r:32} -> {vec.shape[0]}-d, norm {np.linalg.norm(vec):.4f}, first {[round(float(x), 4) for x in vec[:4]]}")
    print(f"  cosine similarities:\n{np.array2string(sims, precision=3, prefix='    ')}")


SHOWS = {"query_embedding": show_query_embedding}


def run(args) -> int:
    from search_build import build_repository

    pipelines = args.pipelines or list(SHOWS)
    if not args.skip_build:
        build_repository.run(argparse.Namespace(pipelines=pipelines, target="local", out=args.repository,
                                                embedding_checkpoint=None, precision="fp32"))
    log = args.repository.resolve() / "tritonserver-demo.log"
    started = time.monotonic()
    with TritonServer(args.repository, log_path=log) as server:
        print(f"tritonserver ready in {time.monotonic() - started:.1f}s on {server.grpc_url} (log: {log})")
        client = grpcclient.InferenceServerClient(server.grpc_url)
        for name in pipelines:
            print(f"\n== {name}")
            SHOWS[name](client)
    print("\nserver stopped")
    return 0
