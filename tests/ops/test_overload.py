"""Overload: above capacity, excess requests are rejected fast and served requests stay within budget.

Uses the pipelines' overload policy (``build_pipeline(name, bounded_queues=True)``: a bounded queue at every
batched stage, no queue timeout; off by default because of a Triton 2.51 stall, see docs/reliability.md),
served on loopback, loaded open-loop by search_tools.load_test at a rate well above what 1-2 cores serve.
"""

from __future__ import annotations

import contextlib
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


# Load shedding in the entry stage itself (search_backends.admission), which works with Triton 2.51 where the queue
# policy above stalls. The stage answers within SHED_WAIT_MS or refuses at once.
SHED_WAIT_MS = 50
SHED_ROWS = 16  # texts per request: heavy requests let the Python load generator offer 4x what the server does
# Offered to find the capacity: several times what 2 cores serve (~30-40 such requests/s), not so much that the
# load generator itself saturates and its own lag dominates.
SHED_PROBE_RATE = 150.0
SHED_REJECTION_P50_MS = 10.0  # refused at arrival: the stub's hand-off (measured p50 1.4-2.7 ms)
SHED_REJECTION_P99_MS = 50.0  # issue 16: the excess is told within 50 ms (measured p99 34 ms)
# Concurrent one-text requests per burst below capacity: the burst of section 2 of docs/reliability.md. Bursts of 16
# from 16 client threads on the same 2 cores are sometimes (1 run in 3) shed after ~45 ms at this 50 ms budget.
SHED_BURST = 8
# Served p99 at 4x overload, seen by the client: the stage's budget plus gRPC, the ensemble and the load
# generator's own event loop, which shares the 2 cores with the server.
SHED_SERVED_P99_MS = 2 * SHED_WAIT_MS


@contextlib.contextmanager
def shedding(tmp_path_factory, name: str, shed_wait_ms: int):
    """A server of pipeline ``name`` alone, built with load shedding at ``shed_wait_ms``."""
    if name not in registered():
        pytest.skip(f"{name} not registered")
    repo = write_repo([build_pipeline(name, shed_wait_ms=shed_wait_ms)], tmp_path_factory.mktemp(f"{name}_shed_repo"))
    with running_server(repo, tmp_path_factory.mktemp(f"{name}_shed_logs") / "tritonserver.log") as s:
        yield s


@pytest.fixture(scope="module")
def shedding_server(tmp_path_factory):
    with shedding(tmp_path_factory, PIPELINE, SHED_WAIT_MS) as s:
        yield s


def test_shedding_config_has_no_triton_queue_policy(shedding_server):
    """The shedding build leaves Triton's queue unbounded (no stall) and hands the budget to the stage."""
    client = grpcclient.InferenceServerClient(shedding_server.grpc_url)
    (stage,) = [m for m in build_pipeline(PIPELINE).models if not isinstance(m, Ensemble)]  # the fused stage
    cfg = config(client, stage.name)
    assert "default_queue_policy" not in cfg["dynamic_batching"]
    assert cfg["parameters"]["shed_wait_ms"]["string_value"] == str(SHED_WAIT_MS)


def sheds_4x_capacity(url: str, model: str, probe_rate: float, served_p99_ms: float, rows: int = 1) -> float:
    """Find the capacity by overloading at ``probe_rate``, then offer 4x it for 3 s: the excess is refused fast
    (UNAVAILABLE, "request shed"), the served keep ``served_p99_ms`` and the stage keeps working. The capacity
    (the lower of the two overloaded rates)."""
    probe, _ = run_load(url, model, rate=probe_rate, duration_s=2.0, timeout_s=20.0, rows=rows)
    print("\nprobe: " + probe.text())
    assert probe.rejected > 0, f"{probe_rate:g} requests/s of {rows} texts did not overload {model}: {probe.text()}"
    capacity = probe.served_per_s
    report, outcomes = run_load(url, model, rate=4 * capacity, duration_s=3.0, timeout_s=20.0, rows=rows)
    print(f"4x capacity ({capacity:.0f} requests/s): " + report.text())
    assert report.other_errors == 0, report.error_samples
    for o in outcomes:
        if not o.ok:
            assert o.status == "StatusCode.UNAVAILABLE" and "overloaded: request shed" in o.message, o
    assert report.rejected > report.sent / 2, report.text()
    assert report.rejected_p50_ms <= SHED_REJECTION_P50_MS, report.text()
    assert report.rejected_p99_ms <= SHED_REJECTION_P99_MS, report.text()
    assert report.served >= 2 * capacity, report.text()  # ~3 s at capacity: the stage keeps working while it sheds
    assert report.served_p99_ms <= served_p99_ms, report.text()
    # What the stage sustained, measured twice under overload (2 s probe, 3 s at 4x): the lower. A short probe on a
    # shared machine read 72-161 requests/s for the search bar while the 4x phase served 104-130/s, so "60% of the
    # probe" was sometimes 80% of what the stage was doing.
    return min(capacity, report.served_per_s)


def test_the_entry_stage_sheds_4x_its_capacity_fast_and_serves_within_budget(shedding_server):
    sheds_4x_capacity(shedding_server.grpc_url, PIPELINE, SHED_PROBE_RATE, SHED_SERVED_P99_MS, rows=SHED_ROWS)


def test_below_capacity_and_in_bursts_nothing_is_shed(shedding_server):
    """Open loop at 60% of what the stage serves, then bursts of SHED_BURST concurrent one-text requests: no
    rejection."""
    import concurrent.futures as cf

    url = shedding_server.grpc_url
    probe, _ = run_load(url, PIPELINE, rate=SHED_PROBE_RATE, duration_s=1.5, timeout_s=20.0, rows=SHED_ROWS)
    steady, _ = run_load(url, PIPELINE, rate=0.6 * probe.served_per_s, duration_s=3.0, rows=SHED_ROWS)
    print("\n60% of capacity: " + steady.text())
    assert steady.rejected == 0 and steady.other_errors == 0, steady.text()

    clients = [grpcclient.InferenceServerClient(url) for _ in range(SHED_BURST)]
    cfg = config(clients[0], PIPELINE)
    with cf.ThreadPoolExecutor(SHED_BURST) as pool:
        for burst in range(10):
            futures = [pool.submit(c.infer, PIPELINE, good_request(grpcclient, cfg, k)) for k, c in enumerate(clients)]
            for f in futures:
                f.result()  # raises on any rejection
            time.sleep(0.1)


# The spell stage (CTranslate2) sheds by decoding work: a request costs its texts x num_beams decoder rows, so the
# queue never holds more decoding than the budget allows, whatever controls the clients pick.
SPELL_SHED_WAIT_MS = 100
WORST_CASE_CONTROLS = {"num_beams": 8, "early_stopping": "never", "max_new_tokens": 48}


@pytest.fixture(scope="module")
def spell_shedding_server(tmp_path_factory):
    with shedding(tmp_path_factory, "spell_correct", SPELL_SHED_WAIT_MS) as s:
        yield s


def test_worst_case_decoding_floods_are_shed_and_ordinary_queries_still_served(spell_shedding_server):
    """Clients asking for the most expensive decoding (8 beams, never stop early) at a rate far beyond what the
    stage decodes: the excess is refused fast, what is served stays near the budget, and a plain greedy query
    sent meanwhile is answered or refused at once, never held behind the flood."""
    import threading

    url = spell_shedding_server.grpc_url
    flood: dict = {}

    def run_flood():
        flood["report"], flood["outcomes"] = run_load(
            url, "spell_correct", rate=100.0, duration_s=3.0, timeout_s=20.0, rows=4, parameters=WORST_CASE_CONTROLS
        )

    thread = threading.Thread(target=run_flood)
    thread.start()
    time.sleep(1.0)
    client = grpcclient.InferenceServerClient(url)
    cfg = config(client, "spell_correct")
    plain = []
    for k in range(10):
        started = time.perf_counter()
        try:
            client.infer("spell_correct", good_request(grpcclient, cfg, k), parameters={"num_beams": 1})
            plain.append(("ok", time.perf_counter() - started))
        except Exception as exc:  # noqa: BLE001 - a shed plain query is acceptable, a slow one is not
            assert "overloaded: request shed" in str(exc), exc
            plain.append(("shed", time.perf_counter() - started))
        time.sleep(0.1)
    thread.join(60)
    report = flood["report"]
    print("\nworst-case flood: " + report.text() + f"\nplain queries: {plain}")
    assert report.rejected > 0 and report.other_errors == 0, report.text()
    assert report.rejected_p50_ms <= SHED_REJECTION_P50_MS, report.text()
    assert report.served_p99_ms <= 2 * SPELL_SHED_WAIT_MS + 100, report.text()
    assert max(seconds for _, seconds in plain) < (2 * SPELL_SHED_WAIT_MS + 100) / 1000, plain
    assert any(kind == "ok" for kind, _ in plain), plain


# The whole search bar sheds too, with its stages in-process (a batch is priced by timing the bar itself). One text
# per request: one query costs ~15 ms of the 2 cores, so ~100 requests/s is the capacity the probe finds.
BAR_SHED_WAIT_MS = 100
BAR_PROBE_RATE = 300.0


@pytest.fixture(scope="module")
def bar_shedding_server(tmp_path_factory):
    with shedding(tmp_path_factory, "search_bar", BAR_SHED_WAIT_MS) as s:
        yield s


def test_the_search_bar_sheds_4x_its_capacity_fast_and_nothing_below_it(bar_shedding_server):
    url = bar_shedding_server.grpc_url
    capacity = sheds_4x_capacity(url, "search_bar", BAR_PROBE_RATE, 2 * BAR_SHED_WAIT_MS)
    steady, _ = run_load(url, "search_bar", rate=0.6 * capacity, duration_s=3.0)
    print("60% of capacity: " + steady.text())
    assert steady.rejected == 0 and steady.other_errors == 0, steady.text()
