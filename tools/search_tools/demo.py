"""`searchbar demo`: the README's main job: build, serve, and query every pipeline with examples."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from search_backends.contracts import product_search as P
from search_backends.contracts import query_embedding as Q
from search_backends.contracts import search_bar as C
from search_backends.contracts import spell_correct as S

from .server import TritonServer

EXAMPLES = {
    Q.QUERY_EMBEDDING: ["taylor swift love story", "lofi beats to study to", "jazz piano for dinner"],
    P.INTENT: [
        "play taylor swift",
        "how do i reset my password",
        "wireless noise cancelling headphones",
        "weather tomorrow",
    ],
    S.SPELL_CORRECT: ["tayler swift", "metalica enter sandman", "lofi beats to studdy", "the weekend blinding lihgts"],
    C.SEARCH_BAR: ["metalica enter sandman", "master of pupets", "bohemian rapsody", "wireless hedphones"],
}
PAIRS = [
    (
        {
            P.A_TYPE: "headphones",
            P.A_TITLE: "Sony WH-1000XM4 Wireless Noise Cancelling Headphones, Black",
            P.B_TYPE: "headphones",
            P.B_TITLE: "sony wh1000xm4 noise-cancelling wireless headphones (black)",
        }
    ),
    (
        {
            P.A_TYPE: "phone case",
            P.A_TITLE: "iPhone 13 silicone case blue",
            P.B_TYPE: "laptop",
            P.B_TITLE: "Lenovo ThinkPad X1 Carbon 14 inch 16GB",
        }
    ),
]


def add_arguments(parser) -> None:
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--pipelines", nargs="+", default=None, help="default: every pipeline with examples")
    parser.add_argument("--skip-build", action="store_true")
    parser.add_argument(
        "--specs-only",
        action="store_true",
        help="write only the config.pbtxt of every model the demo builds, as the specs render them "
        "(nothing exported; what model_repository/ commits), and stop",
    )
    parser.add_argument(
        "--log",
        type=Path,
        default=Path("out") / "tritonserver-demo.log",
        help="server log (kept outside the model repository, which holds model files only)",
    )


def _strings(name: str, values: list[str]) -> grpcclient.InferInput:
    array = np.array([[v.encode()] for v in values], dtype=np.object_)
    t = grpcclient.InferInput(name, list(array.shape), "BYTES")
    t.set_data_from_numpy(array)
    return t


def show_query_embedding(client) -> None:
    texts = EXAMPLES[Q.QUERY_EMBEDDING]
    emb = client.infer(Q.QUERY_EMBEDDING, [_strings(Q.TEXT, texts)]).as_numpy(Q.EMBEDDING)
    sims = emb @ emb.T
    for text, vec in zip(texts, emb):
        print(
            f"  {text!r:32} -> {vec.shape[0]}-d, norm {np.linalg.norm(vec):.4f}, first {[round(float(x), 4) for x in vec[:4]]}"
        )
    print(f"  cosine similarities:\n{np.array2string(sims, precision=3, prefix='    ')}")


def show_query_intent(client) -> None:
    texts = EXAMPLES[P.INTENT]
    result = client.infer(P.INTENT, [_strings(P.TEXT, texts)])
    for text, label, top, probs in zip(
        texts, result.as_numpy(P.LABEL), result.as_numpy(P.TOP_LABELS), result.as_numpy(P.TOP_PROBABILITIES)
    ):
        ranked = ", ".join(f"{name.decode()} {p:.3f}" for name, p in zip(top, probs))
        print(f"  {text!r:42} -> {label[0].decode():8} ({ranked})")


def show_product_duplicate(client) -> None:
    for pair in PAIRS:
        inputs = [_strings(name, [value]) for name, value in pair.items()]
        score = float(client.infer(P.DUPLICATE, inputs).as_numpy(P.SCORE)[0, 0])
        print(f"  {pair[P.A_TITLE][:40]!r} vs {pair[P.B_TITLE][:40]!r} -> P(duplicate) {score:.3f}")


def show_spell_correct(client) -> None:
    texts = EXAMPLES[S.SPELL_CORRECT]
    beams_parameter = S.CONTROL_INPUTS[S.NUM_BEAMS]  # request parameters use the generate() option names
    for beams in (1, 4):
        served = client.infer(S.SPELL_CORRECT, [_strings(S.TEXT, texts)], parameters={beams_parameter: beams})
        raw = client.infer(
            S.SPELL_CORRECT, [_strings(S.TEXT, texts)], parameters={beams_parameter: beams, S.GUARD_PARAMETER: False}
        )
        for text, fixed, model in zip(texts, served.as_numpy(S.CORRECTED), raw.as_numpy(S.CORRECTED)):
            print(f"  num_beams={beams}  {text!r:32} -> {fixed[0].decode()!r:32} (raw model: {model[0].decode()!r})")


def show_search_bar(client) -> None:
    from .search_bar_view import format_results

    texts = EXAMPLES[C.SEARCH_BAR]
    top_k = grpcclient.InferInput(C.TOP_K, [len(texts), 1], "INT32")
    top_k.set_data_from_numpy(np.full((len(texts), 1), 5, np.int32))
    result = client.infer(C.SEARCH_BAR, [_strings(C.TEXT, texts), top_k])
    print("  (one request: spell correction -> intent + query embedding -> catalog search)")
    print("  " + format_results(texts, result).replace("\n", "\n  "))


SHOWS = {
    Q.QUERY_EMBEDDING: show_query_embedding,
    P.INTENT: show_query_intent,
    P.DUPLICATE: show_product_duplicate,
    S.SPELL_CORRECT: show_spell_correct,
    C.SEARCH_BAR: show_search_bar,
}


def build_args(pipelines: list[str], repository: Path, *, specs_only: bool = False) -> argparse.Namespace:
    """The `searchbar build` the demo runs: target local, fp32 (the same engines on every CPU), sweep batching."""
    return argparse.Namespace(
        pipelines=pipelines,
        target="local",
        out=repository,
        embedding_checkpoint=None,
        precision="fp32",
        specs_only=specs_only,
    )


def run(args) -> int:
    from search_build.repository import build_command

    pipelines = args.pipelines or list(SHOWS)
    if getattr(args, "specs_only", False):
        build_command.run(build_args(pipelines, args.repository, specs_only=True))
        return 0
    if not args.skip_build:
        build_command.run(build_args(pipelines, args.repository))
    log = args.log.resolve()
    if log.is_relative_to(args.repository.resolve()):
        raise SystemExit(f"--log {log} is inside the model repository {args.repository}: keep logs outside it")
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with TritonServer(args.repository, log_path=log) as server:
        print(f"tritonserver ready in {time.monotonic() - started:.1f}s on {server.grpc_url} (log: {log})")
        client = grpcclient.InferenceServerClient(server.grpc_url)
        for name in pipelines:
            print(f"\n== {name}")
            SHOWS[name](client)
    print("\nserver stopped")
    return 0
