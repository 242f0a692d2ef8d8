"""Overload: above capacity, excess requests are rejected fast and served requests stay within budget.

Uses the pipelines' overload policy (``build_pipeline(name, bounded_queues=True)``: a bounded queue at every
batched stage, no queue timeout; off by default because of a Triton 2.51 stall, see docs/reliability.md),
served on loopback, loaded open-loop by search_tools.load_test at a rate well above what 1-2 cores serve.
"""

from __future__ import annotations

import time

import pytest
import tritonclient.grpc as grpcclient

from support.reliability import config, good_request, registered, running_server, write_repo
from search_build.pipelines import build_pipeline
from search_build.repository.spec import Ensemble
from search_tools.load_test import run_load

PIPELINE = "query_embedding"
# Served p99 budget under overload (docs/reliability.md): the engine queue (128 rows) drains in ~0.7-1.3 s on
# the core left by the load generator; 2 s leaves room for the neighbours on this shared machine. Unbounded,
# the same overload made requests 8 s late within 4 s.
SERVED_P99_BUDGET_MS = 2000.0
# The bound a full queue actually guarantees is queue depth / throughput, so on a shared machine whose other load
# halves the throughput (seen: 83/s instead of ~170/s) the same ~250 rows ahead take ~3 s. The budget grows with the
# measured drain time of the engine queue plus two batches in flight, with 50% headroom -- never below 2 s. An
# unbounded queue still fails it by far: requests wait for the whole backlog (tens of seconds at these rates).
QUEUED_ROWS_AHEAD_HEADROOM = 1.5
QUEUE_FULL_P50_BUDGET_MS = 100.0  # "Exceeds maximum queue size" comes back at once
# A rejection can wait out Triton 2.51's 500 ms payload-slot timeout (the lost wake-up of docs/reliability.md,
# issue 16) before "Exceeds maximum queue size": measured 642 ms p99 on a busy CI run. The p50 above stays strict.
REJECTION_P99_BUDGET_MS = 1000.0
RATES = (800.0, 1600.0)  # requests/s offered; the second only if the first did not overload
SECONDS = 3.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if PIPELINE not in registered():
        pytest.skip(f"{PIPELINE} not registered")
    repo = write_repo([build_pipeline(PIPELINE, bounded_queues=True)], tmp_path_factory.mktemp("overload_repo"))
    with running_server(repo, tmp_path_factory.mktemp("logs") / "tritonserver.log") as s:
        yield s


@pytest.mark.parametrize("name", registered())
def test_every_pipeline_offers_the_bounded_queue_policy(name):
    """One policy for all pipelines: ``bounded_queues=True`` bounds every dynamically batched model, without
    a queue timeout; the default adds no queue policy at all (Triton 2.51 stalls requests when one is set)."""
    bounded = build_pipeline(name, bounded_queues=True)
    for model in bounded.models:
        if isinstance(model, Ensemble) or not model.batching.dynamic or model.batching.max_batch_size == 0:
            continue
        assert model.batching.max_queue_size >= 2 * model.batching.max_batch_size, f"{name}/{model.name}"
        assert model.batching.queue_timeout_us == 0, f"{name}/{model.name}: queue timeouts reject stalled requests"
        default = build_pipeline(name).model(model.name).batching
        assert default.max_queue_size == 0 and default.queue_timeout_us == 0, f"{name}/{model.name}"


def test_served_config_rejects_when_full(server):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    for model in build_pipeline(PIPELINE).models:
        if isinstance(model, Ensemble):
            continue
        policy = config(client, model.name)["dynamic_batching"]["default_queue_policy"]
        assert (
            int(policy["max_queue_size"])
            == build_pipeline(PIPELINE, bounded_queues=True).model(model.name).batching.max_queue_size
            > 0
        )
        assert int(policy.get("default_timeout_microseconds", 0)) == 0


def test_overload_rejects_fast_and_served_latency_stays_bounded(server):
    for rate in RATES:
        report, outcomes = run_load(server.grpc_url, PIPELINE, rate=rate, duration_s=SECONDS, timeout_s=20.0)
        print("\n" + report.text())
        if report.rejected:
            break
    assert report.rejected > 0, f"could not overload the server at {RATES} req/s: {report.text()}"
    assert report.other_errors == 0, report.error_samples
    for o in outcomes:
        if not o.ok:
            assert o.status == "StatusCode.UNAVAILABLE" and "maximum queue size" in o.message, o
    assert report.served > 0
    encoder = build_pipeline(PIPELINE, bounded_queues=True).model("query_embedding_encoder").batching
    rows_ahead = encoder.max_queue_size + 2 * encoder.max_batch_size
    budget_ms = max(SERVED_P99_BUDGET_MS, QUEUED_ROWS_AHEAD_HEADROOM * 1000.0 * rows_ahead / report.served_per_s)
    assert report.served_p99_ms <= budget_ms, f"budget {budget_ms:.0f} ms ({rows_ahead} rows): {report.text()}"
    assert report.rejected_p50_ms <= QUEUE_FULL_P50_BUDGET_MS, report.text()
    assert report.rejected_p99_ms <= REJECTION_P99_BUDGET_MS, report.text()

    # Overload leaves nothing behind: the next clean request is served promptly.
    client = grpcclient.InferenceServerClient(server.grpc_url)
    assert client.is_server_ready()
    cfg = config(client, PIPELINE)
    started = time.perf_counter()
    client.infer(PIPELINE, good_request(grpcclient, cfg, 0))
    assert time.perf_counter() - started < 1.0
