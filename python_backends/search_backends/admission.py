"""Load shedding in front of one batched stage: a request whose wait would break the latency budget is refused
at once, so the requests that are served keep their budget and the excess learns it at once.

Triton 2.51 cannot do this itself: any queue policy (size or timeout) makes its dynamic batcher stall bursts by
~500 ms (docs/reliability.md, the lost wake-up). So the stage's ``execute`` hands its requests to
:class:`AdmissionQueue` and returns; Triton's queue stays empty (the stage is always free to take the next batch),
and this queue, which knows its own backlog, decides.

Two rules, both measured in time, so they hold on any machine without tuning a row count:
  * at arrival: refused when the work queued and running ahead of it, plus its own batch, would keep it longer than
    ``max_wait_s`` (answered within the stub's hand-off, about a millisecond). The work is priced by
    :class:`BatchCost`: a fixed cost per batch plus a cost per row, measured when the stage starts and scaled by
    how the batches actually run (so a slower machine or a neighbour's load is followed within a few batches);
    a per-row price alone would call a burst of small requests, which batch together, too slow;
  * whenever a batch starts: every queued request that can no longer be answered within ``max_wait_s`` behind it
    (the estimate was low, e.g. the machine slowed down) is refused then, instead of served late.
Below capacity, bursts included, neither fires: the queue drains faster than ``max_wait_s``.

One worker thread runs the batches: the queue's head, up to :meth:`AdmissionQueue.batch_limit` rows (so that
waiting for one batch and running in the next fits the budget), goes into one vectorised call, so the batching
the stage had from Triton is kept.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Sequence

_log = logging.getLogger(__name__)

SHED_WAIT_PARAMETER = "shed_wait_ms"  # model parameter: the wait budget in ms (absent or 0: no shedding)
# The Python-backend adapters that read it (the build refuses the parameter for any other model).
SHEDDING_ADAPTERS = ("text_encoder", "spell_corrector", "search_bar")
# Weight of the latest batch in the speed estimate: a few batches follow a change in load or machine speed.
RATE_SMOOTHING = 0.3
# For a stage whose batch cost depends on the content (the search bar: its guard costs 0.1-17 ms per query by its
# words), a request is priced at arrival at the recent speed plus this many times the recent spread of batch times
# around it, so it refuses at arrival what a slow batch would otherwise make it refuse later, from the queue. Stages
# whose cost is rows alone keep 0: the margin would shed their bursts for nothing.
CONTENT_SPREAD_MARGIN = 3.0
# How many recent offers (admitted or refused) give the arrival rate that predicts how full a request's batch gets.
ARRIVAL_WINDOW = 32
# The GIL switch interval of a stub that sheds (Python's default is 5 ms): its ``execute`` thread, which answers
# refusals, must not wait several 5 ms turns behind the worker thread's Python code.
GIL_SWITCH_S = 0.001


@dataclass(frozen=True)
class BatchCost:
    """Seconds one batch takes: ``fixed + per_row * rows`` (a vectorised call has a per-call cost)."""

    fixed: float
    per_row: float

    def seconds(self, rows: int, max_batch_rows: int) -> float:
        batches = -(-rows // max_batch_rows) if rows else 0
        return batches * self.fixed + rows * self.per_row

    @classmethod
    def measure(cls, run_rows: Callable[[int], object], max_batch_rows: int, repeats: int = 3) -> "BatchCost":
        """Time ``run_rows(n)`` (a batch of n dummy rows) at one row and at a full batch; the median of ``repeats``
        runs each, after one warm-up."""
        big = max(2, max_batch_rows)

        def timed(rows: int) -> float:
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                run_rows(rows)
                times.append(time.perf_counter() - started)
            return sorted(times)[len(times) // 2]

        run_rows(1)
        one, full = timed(1), timed(big)
        per_row = max((full - one) / (big - 1), 0.0)
        return cls(fixed=max(one - per_row, 0.0), per_row=per_row)


class Overloaded(Exception):
    """The request was shed: the client should retry later (Triton: UNAVAILABLE)."""


# done(result, error): the request's result from ``run``, or None with the error.
Done = Callable[[Any, BaseException | None], None]
# run(payloads) -> one result per payload, in order: the stage's vectorised call.
Run = Callable[[Sequence[Any]], Sequence[Any]]


@dataclass
class _Queued:
    payload: Any
    rows: int
    done: Done
    arrived: float


class AdmissionQueue:
    """Bounded-wait admission and batching for one stage. ``clock`` is injectable for tests."""

    def __init__(
        self,
        run: Run,
        cost: BatchCost,
        *,
        max_wait_s: float,
        max_batch_rows: int = 64,
        spread_margin: float = 0.0,
        name: str = "admission",
        clock: Callable[[], float] = time.perf_counter,
    ):
        if max_wait_s <= 0 or max_batch_rows < 1:
            raise ValueError(f"max_wait_s must be > 0 and max_batch_rows >= 1, got {max_wait_s} and {max_batch_rows}")
        self.run, self.cost, self.max_wait_s, self.max_batch_rows = run, cost, max_wait_s, max_batch_rows
        self.clock, self.spread_margin = clock, spread_margin
        self.slowdown = 1.0  # how much slower than ``cost`` the recent batches ran (smoothed)
        self.spread = 0.0  # how far the recent batches' slowdowns were from that (smoothed absolute deviation)
        self.shed = 0  # requests refused so far
        self._queue: deque[_Queued] = deque()
        self._queued_rows = 0
        self._arrivals: deque[tuple[float, int]] = deque(maxlen=ARRIVAL_WINDOW)  # (time, rows) of recent offers
        self._running_rows = 0
        self._running_since = 0.0
        self._lock = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def estimated_wait_s(self, rows: int = 1) -> float:
        """Seconds until a request of ``rows`` rows arriving now would be answered."""
        with self._lock:
            return self._estimate(rows)

    def batch_limit(self) -> int:
        """Rows per batch: the most that still leaves a request time to wait for one batch and run in the next
        within the budget (2 batches <= max_wait_s), at most max_batch_rows and at least 1."""
        per_batch = self.max_wait_s / (2 * self.slowdown)
        fits = (
            int((per_batch - self.cost.fixed) / self.cost.per_row + 1e-9)
            if self.cost.per_row > 0
            else self.max_batch_rows
        )
        return min(max(fits, 1), self.max_batch_rows)

    def _arrival_rate(self) -> float:
        """Rows per second offered recently (admitted or not); 0 before two offers."""
        if len(self._arrivals) < 2:
            return 0.0
        span = self.clock() - self._arrivals[0][0]
        return sum(rows for _, rows in list(self._arrivals)[1:]) / span if span > 0 else float("inf")

    def _estimate(self, rows: int) -> float:
        limit = self.batch_limit()
        slowdown = self.slowdown + self.spread_margin * self.spread  # a slow batch ahead, not just an average one
        running = 0.0
        if self._running_rows:
            running = self.cost.seconds(self._running_rows, max(limit, self._running_rows)) * slowdown
            running = max(running - (self.clock() - self._running_since), 0.0)
        full = self.cost.seconds(limit, limit)
        if rows > limit:  # it runs as a batch of its own, after the batches ahead
            return running + slowdown * (-(-self._queued_rows // limit) * full + self.cost.seconds(rows, rows))
        # The batches ahead run full; its own batch holds the rows queued in it, its own and those that arrive
        # before it starts at the recent arrival rate (at most a full batch). Counting it full whatever the load
        # refused requests at 60% of capacity, where batches stay small.
        ahead = -(-(self._queued_rows + rows) // limit) - 1
        starts_in = running + slowdown * ahead * full
        joining = self._arrival_rate() * starts_in if starts_in > 0 else 0.0  # (a burst's rate is infinite)
        own = min(limit, self._queued_rows + rows - ahead * limit + joining)
        return starts_in + slowdown * (self.cost.fixed + own * self.cost.per_row)

    def offer(self, payload: Any, rows: int, done: Done) -> bool:
        """Queue one request of ``rows`` rows. False (and ``done`` is not called) when it is refused at arrival:
        the caller answers it at once. Otherwise ``done`` is called exactly once, on the worker thread."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the admission queue is closed")
            self._arrivals.append((self.clock(), rows))
            # A request on an idle stage is always admitted, whatever its size: it cannot wait behind anyone.
            if (self._queued_rows or self._running_rows) and self._estimate(rows) > self.max_wait_s:
                self.shed += 1
                return False
            self._queue.append(_Queued(payload, rows, done, self.clock()))
            self._queued_rows += rows
            self._lock.notify_all()
        return True

    def refusal(self, rows: int = 1) -> Overloaded:
        """The error for a request refused at arrival (names the estimate and the budget)."""
        wait_ms = 1000.0 * self.estimated_wait_s(rows)
        return Overloaded(
            f"overloaded: request shed (estimated wait {wait_ms:.0f} ms > budget {1000.0 * self.max_wait_s:.0f} ms); "
            "retry later"
        )

    def close(self, timeout: float = 10.0) -> None:
        """Stop after the queued requests are answered."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._thread.join(timeout)

    def _take(self) -> tuple[list[_Queued], list[_Queued]]:
        """Under the lock: the next batch and the requests that can no longer be answered within the budget.

        FIFO, up to :meth:`batch_limit` rows (a bigger batch is cheaper per row but ends later for everyone in it)."""
        batch: list[_Queued] = []
        expired: list[_Queued] = []
        rows, now, limit = 0, self.clock(), self.batch_limit()
        while self._queue:
            item = self._queue[0]
            run_s = self.slowdown * self.cost.seconds(rows + item.rows, max(limit, rows + item.rows))
            if not batch and now - item.arrived + run_s > self.max_wait_s and now - item.arrived > run_s:
                # It would miss the budget even alone, and it has already waited longer than it would take: shed.
                expired.append(self._queue.popleft())
                self._queued_rows -= item.rows
                continue
            if batch and rows + item.rows > limit:
                break
            batch.append(self._queue.popleft())
            self._queued_rows -= item.rows
            rows += item.rows
        self._running_rows, self._running_since = rows, now
        expired += self._hopeless(now, self.slowdown * self.cost.seconds(rows, max(limit, rows)), limit)
        return batch, expired

    def _hopeless(self, now: float, batch_s: float, limit: int) -> list[_Queued]:
        """Under the lock: take out the queued requests that, behind the batch starting now and the rows ahead of
        them, would end after their budget. Refused now rather than when they reach the head of the queue (the
        estimate at arrival can be low while the machine slows down); a request too big to make the budget even
        alone is left to run."""
        hopeless: list[_Queued] = []
        kept: deque[_Queued] = deque()
        ahead = 0
        for item in self._queue:
            finish = now + batch_s + self.slowdown * self.cost.seconds(ahead + item.rows, limit)
            alone = self.slowdown * self.cost.seconds(item.rows, max(limit, item.rows))
            if finish - item.arrived > self.max_wait_s and alone <= self.max_wait_s:
                hopeless.append(item)
                self._queued_rows -= item.rows
            else:
                kept.append(item)
                ahead += item.rows
        self._queue = kept
        return hopeless

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._lock.wait()
                if not self._queue:
                    return  # closed and drained
                batch, expired = self._take()
                self.shed += len(expired)
            for item in expired:
                waited_ms = 1000.0 * (self.clock() - item.arrived)
                self._answer(
                    item,
                    None,
                    Overloaded(
                        f"overloaded: request shed after {waited_ms:.0f} ms in the queue (budget "
                        f"{1000.0 * self.max_wait_s:.0f} ms); retry later"
                    ),
                )
            if not batch:
                continue
            started = self.clock()
            error: BaseException | None = None
            try:
                results = list(self.run([item.payload for item in batch]))
                if len(results) != len(batch):
                    raise RuntimeError(f"run returned {len(results)} results for {len(batch)} requests")
            except Exception as exc:  # noqa: BLE001 - the batch's requests get the error; the stage goes on
                results, error = [None] * len(batch), exc
            predicted = self.cost.seconds(sum(item.rows for item in batch), self.max_batch_rows)
            ratio = (self.clock() - started) / predicted if predicted > 0 else 1.0
            with self._lock:
                self._running_rows = 0
                self.spread = (1 - RATE_SMOOTHING) * self.spread + RATE_SMOOTHING * abs(ratio - self.slowdown)
                self.slowdown = (1 - RATE_SMOOTHING) * self.slowdown + RATE_SMOOTHING * ratio
            for item, result in zip(batch, results):
                self._answer(item, result, error)

    @staticmethod
    def _answer(item: _Queued, result, error) -> None:
        try:
            item.done(result, error)
        except Exception:  # a failing callback must not stop the worker
            _log.exception("admission queue: a done callback failed")
