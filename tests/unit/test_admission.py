"""Load shedding (search_backends.admission): below capacity every request is served in batches; above it the
excess is refused at arrival, a request that waited past the budget anyway is refused, and failures stay local."""

from __future__ import annotations

import threading
import time

import pytest

from search_backends.admission import AdmissionQueue, BatchCost, Overloaded


class _Collector:
    def __init__(self):
        self.answers: dict[int, tuple] = {}
        self.lock = threading.Lock()
        self.all_in = threading.Event()
        self.expected = 0

    def done_for(self, key):
        def done(result, error):
            with self.lock:
                self.answers[key] = (result, error, time.perf_counter())
                if len(self.answers) == self.expected:
                    self.all_in.set()

        return done


def _sleepy_run(fixed: float, per_row: float, calls: list):
    def run(payloads):
        calls.append(len(payloads))
        time.sleep(fixed + per_row * len(payloads))
        return [p * 10 for p in payloads]

    return run


def test_a_burst_below_the_budget_is_served_in_batches_in_order():
    calls: list[int] = []
    cost = BatchCost(fixed=0.004, per_row=0.0005)
    queue = AdmissionQueue(_sleepy_run(0.004, 0.0005, calls), cost, max_wait_s=0.05, max_batch_rows=8)
    got = _Collector()
    got.expected = 20
    assert all(queue.offer(k, 1, got.done_for(k)) for k in range(20))  # ~3 batches of work: well inside 50 ms
    assert got.all_in.wait(5)
    queue.close()
    assert {k: result for k, (result, error, _) in got.answers.items()} == {k: 10 * k for k in range(20)}
    assert all(error is None for _, error, _ in got.answers.values())
    assert max(calls) == 8 and len(calls) <= 4, calls  # batched up to max_batch_rows, not one call per request
    assert queue.shed == 0


def test_overload_is_refused_at_arrival_and_the_served_keep_the_budget():
    """Offer 4x what the stage serves: refusals are immediate, and the served requests wait at most the budget
    plus their own batch."""
    calls: list[int] = []
    fixed, per_row, budget = 0.005, 0.001, 0.03
    queue = AdmissionQueue(
        _sleepy_run(fixed, per_row, calls), BatchCost(fixed, per_row), max_wait_s=budget, max_batch_rows=16
    )
    limit = queue.batch_limit()  # a request may wait one batch and run in the next: 2 x (5 + 10 rows) ms = 30 ms
    assert limit == 10
    capacity = limit / (fixed + limit * per_row)  # rows/s the budget allows
    got = _Collector()
    offered, refused_in = 0, []
    sent_at = {}
    started = time.perf_counter()
    while time.perf_counter() - started < 1.0:
        t0 = time.perf_counter()
        if queue.offer(offered, 1, got.done_for(offered)):
            sent_at[offered] = t0
        else:
            refused_in.append(time.perf_counter() - t0)
        offered += 1
        time.sleep(1 / (4 * capacity))
    got.expected = len(sent_at)
    assert got.all_in.wait(5)
    queue.close()
    served = [got.answers[k][2] - sent_at[k] for k, (_, error, _) in got.answers.items() if error is None]
    assert refused_in and len(refused_in) > offered / 2, (len(refused_in), offered)
    assert max(refused_in) < 0.005  # answered at arrival
    assert sorted(served)[int(0.99 * len(served))] <= budget + 0.02
    assert len(served) >= 0.6 * capacity  # the stage keeps working at its capacity, not below it


def test_a_request_that_waited_past_the_budget_is_refused_not_served_late():
    """The cost model can be wrong (the machine slowed down): the dequeue check still keeps the budget."""
    gate = threading.Event()
    calls: list[int] = []

    def run(payloads):
        calls.append(len(payloads))
        gate.wait(5)
        return list(payloads)

    # The cost model believes batches are free, so everything is admitted at arrival.
    queue = AdmissionQueue(run, BatchCost(0.0, 0.0), max_wait_s=0.02, max_batch_rows=1)
    got = _Collector()
    got.expected = 3
    for k in range(3):
        assert queue.offer(k, 1, got.done_for(k))
    time.sleep(0.05)  # request 0 runs (stuck), 1 and 2 wait past the 20 ms budget
    gate.set()
    assert got.all_in.wait(5)
    queue.close()
    assert got.answers[0][:2] == (0, None)
    for k in (1, 2):
        result, error, _ = got.answers[k]
        assert result is None and isinstance(error, Overloaded) and "in the queue" in str(error)
    assert calls == [1] and queue.shed == 2
    # The slow batch taught the queue that batches cost more than it thought.
    assert queue.slowdown > 1.0 or queue.cost.fixed == 0.0


def test_an_idle_stage_admits_a_request_of_any_size():
    queue = AdmissionQueue(lambda payloads: list(payloads), BatchCost(1.0, 1.0), max_wait_s=0.001, max_batch_rows=4)
    got = _Collector()
    got.expected = 1
    assert queue.offer("big", 64, got.done_for(0))
    assert got.all_in.wait(5)
    queue.close()
    assert got.answers[0][:2] == ("big", None)


def test_a_failing_batch_fails_its_requests_only_and_the_stage_goes_on():
    def run(payloads):
        if "boom" in payloads:
            raise RuntimeError("engine failed")
        return list(payloads)

    queue = AdmissionQueue(run, BatchCost(0.0, 0.0), max_wait_s=1.0, max_batch_rows=1)
    got = _Collector()
    got.expected = 3
    queue.offer("boom", 1, got.done_for(0))
    queue.offer("ok", 1, lambda result, error: 1 / 0)  # a failing callback is logged, not fatal
    queue.offer("fine", 1, got.done_for(1))
    queue.offer("also", 1, got.done_for(2))
    assert got.all_in.wait(5)
    queue.close()
    assert got.answers[0][0] is None and "engine failed" in str(got.answers[0][1])
    assert got.answers[1][:2] == ("fine", None) and got.answers[2][:2] == ("also", None)


def test_batch_cost_is_measured_as_a_fixed_part_and_a_part_per_row():
    cost = BatchCost.measure(lambda rows: time.sleep(0.01 + 0.001 * rows), max_batch_rows=32)
    assert cost.fixed == pytest.approx(0.01, abs=0.004)
    assert cost.per_row == pytest.approx(0.001, abs=0.0003)
    assert cost.seconds(40, 32) == pytest.approx(2 * cost.fixed + 40 * cost.per_row)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="max_wait_s"):
        AdmissionQueue(lambda p: p, BatchCost(0, 0), max_wait_s=0)


def _recent_arrivals(queue: AdmissionQueue, rows_per_s: float, count: int = 32) -> None:
    """Under the lock: as if ``count`` one-row requests had arrived at ``rows_per_s`` up to now."""
    now = queue.clock()
    queue._arrivals.clear()
    queue._arrivals.extend((now - (count - 1 - i) / rows_per_s, 1) for i in range(count))


def test_a_content_priced_stage_prices_arrivals_with_the_spread_of_its_batches():
    """With a spread margin, a request arriving behind queued work is priced at the recent speed plus the margin
    times how much the batch times have varied; without one (row-priced stages) the spread changes nothing."""
    cost = BatchCost(fixed=0.010, per_row=0.001)
    plain = AdmissionQueue(lambda payloads: payloads, cost, max_wait_s=1.0, max_batch_rows=8)
    careful = AdmissionQueue(lambda payloads: payloads, cost, max_wait_s=1.0, max_batch_rows=8, spread_margin=3.0)
    try:
        for queue in (plain, careful):
            with queue._lock:  # a backlog of 12 rows and batches whose speed varied by 20% around the average
                queue._queued_rows, queue.spread = 12, 0.2
                _recent_arrivals(queue, rows_per_s=100_000.0)  # overload: every batch fills up before it starts
        assert plain.estimated_wait_s(2) == pytest.approx(2 * cost.seconds(8, 8))  # two full batches ahead
        assert careful.estimated_wait_s(2) == pytest.approx(1.6 * plain.estimated_wait_s(2))
    finally:
        for queue in (plain, careful):
            with queue._lock:
                queue._queued_rows = 0
            queue.close()


def test_a_request_is_priced_with_the_batch_it_will_actually_join():
    """Below capacity batches stay small: a request behind a few queued rows is priced with the full batches ahead
    of it and its own batch as it will be (the rows queued in it, its own, and what arrives before it starts at the
    recent rate), not as a full batch. Counting it full refused requests at 60% of the search bar's capacity."""
    cost = BatchCost(fixed=0.010, per_row=0.001)
    queue = AdmissionQueue(lambda payloads: payloads, cost, max_wait_s=1.0, max_batch_rows=8)
    try:
        with queue._lock:
            queue._queued_rows = 12  # one full batch ahead, 4 rows in its own
        assert queue.estimated_wait_s(2) == pytest.approx(cost.seconds(8, 8) + cost.seconds(6, 8))  # nobody else
        with queue._lock:
            # 50 rows/s: about one more row arrives during the 18 ms the full batch ahead runs
            _recent_arrivals(queue, rows_per_s=50.0)
        joining = 50.0 * cost.seconds(8, 8)
        assert queue.estimated_wait_s(2) == pytest.approx(cost.seconds(8, 8) + cost.fixed + (6 + joining) * 0.001)
        with queue._lock:
            _recent_arrivals(queue, rows_per_s=100_000.0)
        assert queue.estimated_wait_s(2) == pytest.approx(2 * cost.seconds(8, 8))  # never more than a full batch
    finally:
        with queue._lock:
            queue._queued_rows = 0
        queue.close()


def test_a_burst_arriving_at_one_instant_prices_a_full_batch_not_an_infinite_one():
    """Offers at the same clock reading (a burst) make the arrival rate infinite: the request's batch counts full
    behind a running batch, and as what is queued when nothing runs ahead of it."""
    cost = BatchCost(fixed=0.010, per_row=0.001)
    queue = AdmissionQueue(lambda payloads: payloads, cost, max_wait_s=1.0, max_batch_rows=8, clock=lambda: 5.0)
    try:
        with queue._lock:
            queue._arrivals.extend([(5.0, 1)] * 4)
            queue._queued_rows = 4
        assert queue.estimated_wait_s(1) == pytest.approx(cost.seconds(5, 8))
        with queue._lock:
            queue._running_rows, queue._running_since = 2, 5.0
        assert queue.estimated_wait_s(1) == pytest.approx(cost.seconds(2, 8) + cost.seconds(8, 8))
    finally:
        with queue._lock:
            queue._queued_rows = queue._running_rows = 0
        queue.close()
