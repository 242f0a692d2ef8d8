"""In-flight (iteration-level) batching over the decoding loop: a request that arrives while others decode joins
at the next step, and a finished request is answered at once, without waiting for the rest of its batch.

One scheduler thread owns the engines. Each iteration it
  1. admits every job submitted since the last admission as one new :class:`~.loop.Cohort` (one encoder call),
     unless ``max_cohorts`` cohorts are live already: then they wait and join the next cohort together,
  2. steps every cohort once (one decoder call each; rows of different cohorts sit at different positions, so
     they cannot share a call),
  3. answers each job whose rows are all final through its ``done`` callback, on this thread.
``max_cohorts`` trades the wait of a new arrival against decoder calls per step: under steady load every
arrival would otherwise start its own cohort of one request, and the per-call cost of small calls would eat the
batching (measured: benchmarks/results/spell_correct.md).
A cohort is exactly the batch ``generate`` would have decoded, so results stay token for token equal to HF.

``submit`` blocks while the live and waiting rows would exceed ``max_rows``: the caller (a Triton ``execute``)
then holds its requests, and the server's own queue bounds and timeouts apply to everything behind it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .loop import Cohort, DecodeStep, Encode
from .params import GenerationParams

_log = logging.getLogger(__name__)

# done(results, error): results are the job's token rows in submission order, or None with the error.
Done = Callable[[list[list[int]] | None, BaseException | None], None]


@dataclass
class _Job:
    input_ids: np.ndarray
    attention_mask: np.ndarray
    params: Sequence[GenerationParams]
    done: Done
    rows: int  # decoder rows the job holds while it decodes (num_beams per request)
    results: list = field(default_factory=list)
    waiting: int = 0


class InflightDecoder:
    """The iteration-level scheduler. ``pad_id`` pads the token rows of jobs admitted together."""

    def __init__(
        self,
        encode: Encode,
        decode_step: DecodeStep,
        *,
        pad_id: int = 0,
        max_rows: int = 256,
        max_cohorts: int = 2,
        name: str = "inflight-decoder",
    ):
        if max_rows < 1 or max_cohorts < 1:
            raise ValueError(f"max_rows and max_cohorts must be >= 1, got {max_rows} and {max_cohorts}")
        self.encode, self.decode_step, self.pad_id, self.max_rows = encode, decode_step, pad_id, max_rows
        self.max_cohorts = max_cohorts
        self._lock = threading.Condition()
        self._pending: list[_Job] = []
        self._held_rows = 0  # rows of pending and decoding jobs
        self._closed = False
        self.iterations = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, input_ids, attention_mask, params: Sequence[GenerationParams], done: Done) -> None:
        """Queue one job (its rows decode together with whatever else is live); ``done`` is called exactly once."""
        self.submit_all([(input_ids, attention_mask, params, done)])

    def submit_all(self, jobs: Sequence[tuple]) -> None:
        """Queue ``(input_ids, attention_mask, params, done)`` jobs that start together (one cohort, one encoder
        call: the requests of one Triton batch); each is answered on its own as soon as its rows are final."""
        queued = []
        for input_ids, attention_mask, params, done in jobs:
            input_ids = np.asarray(input_ids, dtype=np.int64)
            attention_mask = np.asarray(attention_mask, dtype=np.int64)
            if input_ids.ndim != 2 or input_ids.shape != attention_mask.shape or len(params) != input_ids.shape[0]:
                raise ValueError(
                    f"input_ids {input_ids.shape}, attention_mask {attention_mask.shape} and {len(params)} "
                    "parameter sets must describe the same rows"
                )
            if len(params):
                rows = sum(p.num_beams for p in params)
                queued.append(_Job(input_ids, attention_mask, params, done, rows, [None] * len(params), len(params)))
            else:
                done([], None)
        if not queued:
            return
        rows = sum(job.rows for job in queued)
        with self._lock:
            # Jobs larger than the whole budget still run, alone, rather than never.
            while not self._closed and self._held_rows and self._held_rows + rows > self.max_rows:
                self._lock.wait()
            if self._closed:
                raise RuntimeError("the decoder is closed")
            self._pending += queued
            self._held_rows += rows
            self._lock.notify_all()

    def decode(self, input_ids, attention_mask, params: Sequence[GenerationParams]) -> list[list[int]]:
        """Submit and wait: the synchronous form of :meth:`submit`."""
        finished = threading.Event()
        outcome: dict = {}

        def done(results, error):
            outcome.update(results=results, error=error)
            finished.set()

        self.submit(input_ids, attention_mask, params, done)
        finished.wait()
        if outcome["error"] is not None:
            raise outcome["error"]
        return outcome["results"]

    def close(self, timeout: float = 10.0) -> None:
        """Stop after the jobs already submitted are answered."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        cohorts: list[tuple[Cohort, list[tuple[_Job, int]]]] = []  # cohort, request index -> (job, row in job)
        while True:
            with self._lock:
                while not self._pending and not cohorts and not self._closed:
                    self._lock.wait()
                if not self._pending and not cohorts:
                    return  # closed and drained
                admitted = []
                if len(cohorts) < self.max_cohorts:
                    admitted, self._pending = self._pending, []
            if admitted:
                cohort = self._admit(admitted)
                if cohort is not None:
                    cohorts.append(cohort)
            still = []
            for cohort, owners in cohorts:
                try:
                    finished = cohort.step(self.decode_step)
                except Exception as exc:  # the engine failed: this cohort's jobs get the error, others go on
                    unanswered = {id(job): job for job, _ in owners if job.waiting > 0}
                    self._fail(unanswered.values(), exc)
                    continue
                for index in finished:
                    job, row = owners[index]
                    job.results[row] = cohort.result(index)
                    job.waiting -= 1
                    if job.waiting == 0:
                        self._answer(job, job.results, None)
                if not cohort.done:
                    still.append((cohort, owners))
            cohorts = still
            self.iterations += 1

    def _admit(self, jobs: list[_Job]):
        width = max(job.input_ids.shape[1] for job in jobs)
        ids = np.concatenate([_pad_to(job.input_ids, width, self.pad_id) for job in jobs])
        mask = np.concatenate([_pad_to(job.attention_mask, width, 0) for job in jobs])
        params = [p for job in jobs for p in job.params]
        owners = [(job, row) for job in jobs for row in range(len(job.params))]
        try:
            return Cohort(self.encode, ids, mask, params), owners
        except Exception as exc:
            self._fail(jobs, exc)
            return None

    def _fail(self, jobs, error: BaseException) -> None:
        for job in jobs:
            self._answer(job, None, error)

    def _answer(self, job: _Job, results, error) -> None:
        job.waiting = 0
        try:
            job.done(results, error)
        except Exception:  # a failing callback must not stop the scheduler or leak the job's rows
            _log.exception("in-flight decoder: a done callback failed")
        finally:
            with self._lock:
                self._held_rows -= job.rows
                self._lock.notify_all()


def _pad_to(rows: np.ndarray, width: int, value: int) -> np.ndarray:
    if rows.shape[1] == width:
        return rows
    out = np.full((rows.shape[0], width), value, dtype=rows.dtype)
    out[:, : rows.shape[1]] = rows
    return out
