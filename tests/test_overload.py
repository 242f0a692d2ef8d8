"""Overload: above capacity, excess requests are rejected fast and served requests stay within budget.

Uses the pipelines' own Batching defaults (bounded queues + queue timeout with REJECT), served on
loopback, loaded open-loop by search_tools.load_test at a rate well above what 1-2 CPU cores serve.
"""
from __future__ import annotations

import time

import pytest
import tritonclient.grpc as grpcclient

from reliability_support import config, good_request, registered, running_server, write_repo
from search_build.pipelines import build_pipeline
from search_build.spec import Ensemble
from search_tools.load_test import run_load

PIPELINE = "query_embedding"
# Served p99 budget under overload: two bounded stages x 250 ms queue timeout + one batch of compute each.
SERVED_P99_BUDGET_MS = 1000.0
QUEUE_FULL_P50_BUDGET_MS = 100.0     # "Exceeds maximum queue size" comes back at once
REJECTION_P99_BUDGET_MS = 2000.0      # timeouts are noticed when the batcher next looks at the queue
RATES = (800.0, 1600.0)               # requests/s offered; the second only if the first did not overload
SECONDS = 3.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if PIPELINE not in registered():
        pytest.skip(f"{PIPELINE} not registered")
    repo = write_repo([build_pipeline(PIPELINE)], tmp_path_factory.mktemp("overload_repo"))
    with running_server(repo, tmp_path_factory.mktemp("logs") / "tritonserver.log") as s:
        yield s


@pytest.mark.parametrize("name", registered())
def test_every_batched_model_has_a_bounded_queue(name):
    """The spec policy: every dynamically batched model of every pipeline rejects rather than queues forever."""
    for model in build_pipeline(name).models:
        if isinstance(model, Ensemble) or not model.batching.dynamic or model.batching.max_batch_size == 0:
            continue
        assert model.batching.max_queue_size > 0, f"{name}/{model.name}: unbounded queue"
        assert model.batching.queue_timeout_us > 0, f"{name}/{model.name}: no queue timeout"


def test_served_config_rejects_when_full(server):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    for model in build_pipeline(PIPELINE).models:
        if isinstance(model, Ensemble):
            continue
        policy = config(client, model.name)["dynamic_batching"]["default_queue_policy"]
        assert int(policy["max_queue_size"]) == model.batching.max_queue_size
        assert int(policy["default_timeout_microseconds"]) == model.batching.queue_timeout_us
        assert policy.get("timeout_action", "REJECT") == "REJECT"  # REJECT is the enum default (omitted)


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
            assert o.status == "StatusCode.UNAVAILABLE" and (
                "maximum queue size" in o.message or "timeout" in o.message.lower()), o
    assert report.served > 0
    assert report.served_p99_ms <= SERVED_P99_BUDGET_MS, report.text()
    queue_full = sorted(o.latency_s * 1000 for o in outcomes if "maximum queue size" in o.message)
    if queue_full:
        assert queue_full[len(queue_full) // 2] <= QUEUE_FULL_P50_BUDGET_MS, report.text()
    assert report.rejected_p99_ms <= REJECTION_P99_BUDGET_MS, report.text()

    # Overload leaves nothing behind: the next clean request is served promptly.
    client = grpcclient.InferenceServerClient(server.grpc_url)
    assert client.is_server_ready()
    cfg = config(client, PIPELINE)
    started = time.perf_counter()
    client.infer(PIPELINE, good_request(grpcclient, cfg, 0))
    assert time.perf_counter() - started < 1.0
