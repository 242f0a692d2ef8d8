"""Where a served request's time goes, hop by hop: Triton's own statistics around a perf_analyzer run.

For every model an entry reaches (ensemble steps), the server's cumulative statistics are read before and
after the load; per request of that model they give its queue wait, input copy (compute_input: for a Python
model the request crossing into the stub through shared memory), execution (compute_infer) and output copy
(compute_output). The entry model's own request time is the server-side total; what the client measured beyond
it is transport (gRPC, serialisation, perf_analyzer itself). Ensembles add no compute of their own; the gap
between the entry's total and the sum of its steps is the ensemble's scheduling between steps.

    searchbar hops --repository model_repository --model query_embedding --concurrency 1 8 32
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from search_backends.contracts.query_embedding import QUERY_EMBEDDING

STAT_KEYS = ("queue", "compute_input", "compute_infer", "compute_output")


@dataclass(frozen=True)
class Hop:
    model: str
    requests: int
    executions: int
    queue_ms: float
    input_ms: float
    infer_ms: float
    output_ms: float

    @property
    def total_ms(self) -> float:
        return self.queue_ms + self.input_ms + self.infer_ms + self.output_ms

    @property
    def rows_per_execution(self) -> float:
        return self.requests / self.executions if self.executions else 0.0


def _stats(client, model: str) -> dict:
    stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    inference = stats.get("inference_stats", {})
    out = {
        key: (int(inference.get(key, {}).get("count", 0)), int(inference.get(key, {}).get("ns", 0)))
        for key in ("success", *STAT_KEYS)
    }
    out["executions"] = int(stats.get("execution_count", 0))
    return out


def step_models(client, entry: str) -> list[str]:
    """The models an ensemble calls, in step order (nested ensembles expanded); [entry] for other models."""
    config = client.get_model_config(entry, as_json=True)["config"]
    steps = config.get("ensemble_scheduling", {}).get("step", [])
    if not steps:
        return [entry]
    models: list[str] = []
    for step in steps:
        for name in step_models(client, step["model_name"]):
            if name not in models:
                models.append(name)
    return models


def hops_between(before: dict, after: dict) -> list[Hop]:
    hops = []
    for model in after:
        delta = {
            k: (after[model][k][0] - before[model][k][0], after[model][k][1] - before[model][k][1])
            for k in ("success", *STAT_KEYS)
        }
        requests = delta["success"][0]
        per = lambda key: delta[key][1] / requests / 1e6 if requests else 0.0  # noqa: E731 - ns per request -> ms
        hops.append(
            Hop(
                model,
                requests,
                after[model]["executions"] - before[model]["executions"],
                per("queue"),
                per("compute_input"),
                per("compute_infer"),
                per("compute_output"),
            )
        )
    return hops


def measure(grpc_url: str, entry: str, concurrency: int, input_data: Path, *, measurement_ms: int = 4000) -> dict:
    """One perf_analyzer level with the per-hop breakdown of its requests."""
    import tritonclient.grpc as grpcclient

    from .perf import run_perf_analyzer

    client = grpcclient.InferenceServerClient(grpc_url)
    models = [entry, *[m for m in step_models(client, entry) if m != entry]]
    before = {m: _stats(client, m) for m in models}
    point = run_perf_analyzer(entry, grpc_url, [concurrency], input_data, measurement_ms=measurement_ms)[0]
    after = {m: _stats(client, m) for m in models}
    hops = hops_between(before, after)
    server_ms = hops[0].total_ms  # the entry's request time: everything inside the server
    steps_ms = sum(h.total_ms for h in hops[1:])
    return {
        "concurrency": concurrency,
        "throughput": point.throughput,
        "client_avg_ms": point.avg_ms,
        "client_p99_ms": point.p99_ms,
        "server_ms": server_ms,
        "ensemble_scheduling_ms": max(0.0, server_ms - steps_ms) if len(hops) > 1 else 0.0,
        "transport_ms": max(0.0, point.avg_ms - server_ms),
        "hops": [
            {**asdict(h), "total_ms": h.total_ms, "rows_per_execution": h.rows_per_execution} for h in hops[1:] or hops
        ],
    }


def format_hops(result: dict) -> str:
    lines = [
        f"concurrency {result['concurrency']}: {result['throughput']:.0f} req/s, client avg "
        f"{result['client_avg_ms']:.2f} ms (p99 {result['client_p99_ms']:.2f})",
        f"  {'hop':32s} {'queue':>7s} {'input':>7s} {'execute':>8s} {'output':>7s} {'total':>7s} {'rows/exec':>9s}",
    ]
    for h in result["hops"]:
        lines.append(
            f"  {h['model']:32s} {h['queue_ms']:7.3f} {h['input_ms']:7.3f} {h['infer_ms']:8.3f} "
            f"{h['output_ms']:7.3f} {h['total_ms']:7.3f} {h['rows_per_execution']:9.1f}"
        )
    lines.append(f"  {'ensemble scheduling':32s} {'':31s} {result['ensemble_scheduling_ms']:7.3f}")
    lines.append(f"  {'gRPC + client (transport)':32s} {'':31s} {result['transport_ms']:7.3f}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--model", default=QUERY_EMBEDDING, help="entry model to load")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--json", type=Path, default=None, help="also write the breakdown here")


def run(args) -> int:
    from .input_data import write_pipeline_input_data
    from .server import TritonServer

    results = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        TritonServer(args.repository, log_path=Path(tmp) / "server.log") as server,
    ):
        data = write_pipeline_input_data(args.model, Path(tmp))
        for c in args.concurrency:
            result = measure(server.grpc_url, args.model, c, data, measurement_ms=int(args.seconds * 1000))
            print(format_hops(result), flush=True)
            results.append(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0
