"""Open-loop load test against a *loopback* tritonserver: served latency vs fast rejection.

Requests are fired on a fixed schedule (``rate`` per second) whether or not earlier ones have
answered, which is how real users behave and what exposes queueing: a closed-loop client slows
down with the server and never overloads it. The run is bounded by ``duration_s`` and
``max_requests``; the addresses are restricted to loopback so it can never load someone else's
server by mistake.

    searchbar load-test --url 127.0.0.1:8001 --model query_embedding --rate 400 --duration 10

The verdict: served requests' p99 stays within ``--budget-ms`` and rejections (UNAVAILABLE:
"Exceeds maximum queue size" or "Request timeout expired") come back quickly.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np

from search_backends.contracts.query_embedding import QUERY_EMBEDDING

from .sample_queries import MUSIC_QUERIES
from .server import loopback_only

REJECTED_STATUSES = ("StatusCode.UNAVAILABLE",)  # queue full, queue timeout, or shed by the stage


@dataclass(frozen=True)
class Outcome:
    """One request: when it was sent (s since start), how long it took, and how it ended."""

    sent_s: float
    latency_s: float
    status: str  # "OK" or the gRPC status name
    message: str = ""
    late_s: float = 0.0  # how far behind its schedule the client sent it (the load generator's own stalls)

    @property
    def ok(self) -> bool:
        return self.status == "OK"

    @property
    def rejected(self) -> bool:
        return self.status in REJECTED_STATUSES


@dataclass
class LoadReport:
    model: str
    rate: float
    duration_s: float
    sent: int
    served: int
    rejected: int
    other_errors: int
    served_p50_ms: float | None
    served_p99_ms: float | None
    served_max_ms: float | None
    rejected_p50_ms: float | None
    rejected_p99_ms: float | None
    served_per_s: float
    error_samples: dict[str, int] = field(default_factory=dict)
    client_late_max_ms: float = 0.0  # the client's worst lateness: above a few ms its latencies include its stalls

    def as_dict(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        f = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        lines = [
            f"{self.model}: offered {self.rate:g}/s for {self.duration_s:.1f}s -> sent {self.sent}, "
            f"served {self.served} ({self.served_per_s:.0f}/s), rejected {self.rejected}, other errors {self.other_errors}",
            f"  served   p50 {f(self.served_p50_ms)} ms  p99 {f(self.served_p99_ms)} ms  max {f(self.served_max_ms)} ms",
            f"  rejected p50 {f(self.rejected_p50_ms)} ms  p99 {f(self.rejected_p99_ms)} ms",
            f"  client sent up to {self.client_late_max_ms:.1f} ms behind schedule",
        ]
        lines += [f"  {n} x {msg}" for msg, n in self.error_samples.items()]
        return "\n".join(lines)


def require_loopback(url: str) -> None:
    """Refuse any address that does not resolve to loopback only."""
    loopback, addresses = loopback_only(url.rsplit(":", 1)[0].strip("[]"))
    if not loopback:
        raise ValueError(f"load tests target only loopback servers; {url!r} resolves to {addresses}")


def text_inputs_factory(metadata: dict, texts: Sequence[str] = MUSIC_QUERIES, rows: int = 1) -> Callable[[int], list]:
    """Request ``i`` -> gRPC inputs: every required string input gets ``rows`` rows of sample text (heavier
    requests let one Python client offer several times what the server can do)."""
    import tritonclient.grpc as grpcclient

    names = [i["name"] for i in metadata["inputs"] if i["datatype"] == "BYTES" and not i.get("optional")]
    if not names:
        raise ValueError(f"{metadata.get('name')}: no required string inputs to fill")
    # Optional inputs are left out (spell_correct's controls: request parameters set them instead); a required
    # non-string input gets the server's clear error.

    def make(i: int) -> list:
        inputs = []
        for k, name in enumerate(names):
            first = i * rows + k
            value = np.array([[texts[(first + r) % len(texts)].encode()] for r in range(rows)], dtype=np.object_)
            t = grpcclient.InferInput(name, [rows, 1], "BYTES")
            t.set_data_from_numpy(value)
            inputs.append(t)
        return inputs

    return make


def model_metadata(url: str, model: str) -> dict:
    """The model's metadata, each input marked ``optional`` from its config."""
    import tritonclient.grpc as grpcclient
    from google.protobuf.json_format import MessageToDict

    client = grpcclient.InferenceServerClient(url)
    try:
        meta = MessageToDict(client.get_model_metadata(model), preserving_proto_field_name=True)
        config = client.get_model_config(model, as_json=True)["config"]
    finally:
        client.close()
    optional = {i["name"] for i in config.get("input", []) if i.get("optional")}
    for tensor in meta["inputs"]:  # metadata does not say which inputs are optional; the config does
        tensor["optional"] = tensor["name"] in optional
    return meta


@contextlib.contextmanager
def steady_heap():
    """Keep the load generator's own garbage collector out of the measured latencies.

    A full collection walks every object the process holds; in a test or notebook process that has imported torch
    and transformers that is ~115 ms, during which no response is read, so served and refused requests alike look
    ~115 ms slower than the server made them. Freezing the heap first takes those objects out of every collection
    (the measured pause drops to microseconds); collection stays on for what the run itself allocates."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def open_loop(
    url: str,
    model: str,
    make_inputs: Callable[[int], list],
    *,
    rate: float,
    duration_s: float,
    max_requests: int = 100_000,
    timeout_s: float = 10.0,
    output: str | None = None,
    parameters: dict | None = None,
) -> list[Outcome]:
    """Send request ``i`` at ``i / rate`` seconds (open loop) for ``duration_s``; gather every outcome."""
    import tritonclient.grpc.aio as aioclient
    from tritonclient.utils import InferenceServerException

    require_loopback(url)
    if rate <= 0 or duration_s <= 0:
        raise ValueError("rate and duration must be positive")
    total = min(max_requests, int(rate * duration_s))
    outputs = [aioclient.InferRequestedOutput(output)] if output else None
    client = aioclient.InferenceServerClient(url)
    outcomes: list[Outcome] = []

    async def one(i: int, due: float) -> None:
        sent = time.perf_counter()
        try:
            await client.infer(model, make_inputs(i), outputs=outputs, parameters=parameters, client_timeout=timeout_s)
            status, message = "OK", ""
        except InferenceServerException as exc:
            status, message = str(exc.status() or "UNKNOWN"), exc.message() or str(exc)
        outcomes.append(Outcome(sent - start, time.perf_counter() - sent, status, message, max(sent - due, 0.0)))

    with steady_heap():
        start = time.perf_counter()
        tasks = []
        try:
            for i in range(total):
                due = start + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.ensure_future(one(i, due)))
            await asyncio.gather(*tasks)
        finally:
            await client.close()
    return outcomes


def summarise(model: str, rate: float, outcomes: Sequence[Outcome]) -> LoadReport:
    served = [o.latency_s * 1000 for o in outcomes if o.ok]
    rejected = [o.latency_s * 1000 for o in outcomes if o.rejected]
    others = [o for o in outcomes if not o.ok and not o.rejected]
    pct = lambda xs, q: float(np.percentile(xs, q)) if xs else None  # noqa: E731
    span = max((o.sent_s + o.latency_s for o in outcomes), default=0.0) or 1.0
    samples: dict[str, int] = {}
    for o in outcomes:
        if not o.ok:
            key = f"{o.status}: {o.message[:120]}"
            samples[key] = samples.get(key, 0) + 1
    return LoadReport(
        model,
        rate,
        max((o.sent_s for o in outcomes), default=0.0),
        len(outcomes),
        len(served),
        len(rejected),
        len(others),
        pct(served, 50),
        pct(served, 99),
        max(served, default=None),
        pct(rejected, 50),
        pct(rejected, 99),
        len(served) / span,
        samples,
        client_late_max_ms=1000.0 * max((o.late_s for o in outcomes), default=0.0),
    )


def run_load(
    url: str,
    model: str,
    *,
    rate: float,
    duration_s: float,
    max_requests: int = 100_000,
    timeout_s: float = 10.0,
    parameters: dict | None = None,
    rows: int = 1,
) -> tuple[LoadReport, list[Outcome]]:
    make = text_inputs_factory(model_metadata(url, model), rows=rows)
    outcomes = asyncio.run(
        open_loop(
            url,
            model,
            make,
            rate=rate,
            duration_s=duration_s,
            max_requests=max_requests,
            timeout_s=timeout_s,
            parameters=parameters,
        )
    )
    return summarise(model, rate, outcomes), outcomes


def add_arguments(parser) -> None:
    parser.add_argument("--url", default="127.0.0.1:8001", help="gRPC address of a loopback tritonserver")
    parser.add_argument("--model", default=QUERY_EMBEDDING)
    parser.add_argument("--rate", type=float, default=400.0, help="requests per second offered (open loop)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of sending (bounded)")
    parser.add_argument("--rows", type=int, default=1, help="texts per request")
    parser.add_argument("--max-requests", type=int, default=20_000)
    parser.add_argument("--timeout", type=float, default=10.0, help="client deadline per request (s)")
    parser.add_argument("--budget-ms", type=float, default=1500.0, help="p99 budget for served requests")
    parser.add_argument("--reject-budget-ms", type=float, default=500.0, help="p99 budget for rejections")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args) -> int:
    report, _ = run_load(
        args.url,
        args.model,
        rate=args.rate,
        duration_s=args.duration,
        max_requests=args.max_requests,
        timeout_s=args.timeout,
        rows=args.rows,
    )
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.text())
    ok = (
        (report.served_p99_ms is None or report.served_p99_ms <= args.budget_ms)
        and (report.rejected_p99_ms is None or report.rejected_p99_ms <= args.reject_budget_ms)
        and not report.other_errors
    )
    print(
        f"verdict: {'PASS' if ok else 'FAIL'} (served p99 budget {args.budget_ms:g} ms, "
        f"rejection p99 budget {args.reject_budget_ms:g} ms, no other errors)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    from search_tools.cli import run_as_main

    run_as_main(__spec__.name)
