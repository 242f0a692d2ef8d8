"""The scoring loop: requests kept in flight, results written in input order, transient errors retried with
exponential backoff (a server restart mid-run only delays rows)."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .journal import ResultWriter
from .readers import Row, batched, count_rows, has_id_column, read_rows
from .scorers import Scorer


@dataclass
class RunStats:
    rows: int = 0
    resumed_from: int = 0
    retries: int = 0
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


async def _score_with_retry(
    scorer: Scorer, rows: Sequence[Row], stats: RunStats, max_retry_s: float, backoff_s: float, max_backoff_s: float
) -> np.ndarray:
    started = time.monotonic()
    attempt = 0
    while True:
        try:
            scores = np.asarray(await scorer.score(rows), dtype=np.float32).reshape(-1)
            if len(scores) != len(rows):
                raise RuntimeError(f"scorer returned {len(scores)} scores for {len(rows)} rows")
            return scores
        except Exception as error:
            if not scorer.is_transient(error) or time.monotonic() - started > max_retry_s:
                raise
            stats.retries += 1
            delay = min(max_backoff_s, backoff_s * 2**attempt) * (0.5 + random.random() / 2)
            attempt += 1
            await asyncio.sleep(delay)


async def score_file_async(
    input_path: str | Path,
    output_path: str | Path,
    scorer: Scorer,
    *,
    rows_per_request: int = 32,
    in_flight: int = 8,
    commit_rows: int = 1024,
    max_retry_s: float = 600.0,
    backoff_s: float = 0.5,
    max_backoff_s: float = 10.0,
    overwrite: bool = False,
    progress: bool = True,
) -> RunStats:
    input_path = Path(input_path)
    identity = await scorer.identity() if hasattr(scorer, "identity") else None
    writer = ResultWriter(
        output_path, input_path, has_id_column(input_path), overwrite=overwrite, model_identity=identity
    )
    stats = RunStats(resumed_from=writer.rows_done)
    if writer.finished:
        writer.close()
        return stats
    total = count_rows(input_path)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=writer.rows_done, unit="row", desc="scoring", file=sys.stderr)
    # One window slot per batch from request until its rows are written: at most ``in_flight``
    # requests run at once and at most that many finished batches wait for an earlier one.
    window = asyncio.Semaphore(max(1, in_flight))
    queue: asyncio.Queue = asyncio.Queue()  # in input order: (rows, task), then None
    started = time.monotonic()
    last_commit = writer.rows_done

    async def produce() -> None:
        for rows in batched(read_rows(input_path, writer.rows_done), rows_per_request):
            await window.acquire()
            queue.put_nowait(
                (
                    rows,
                    asyncio.ensure_future(
                        _score_with_retry(scorer, rows, stats, max_retry_s, backoff_s, max_backoff_s)
                    ),
                )
            )
        queue.put_nowait(None)

    producer = asyncio.ensure_future(produce())
    try:
        while True:
            item = await queue.get()
            if item is None:
                break
            rows, task = item
            scores = await task
            writer.write(rows, scores)
            window.release()
            stats.rows += len(rows)
            if bar is not None:
                bar.update(len(rows))
            if writer.rows_written - last_commit >= commit_rows:
                writer.commit()
                last_commit = writer.rows_written
        await producer
        writer.commit(done=True)
    except BaseException:
        producer.cancel()
        while not queue.empty():
            item = queue.get_nowait()
            if item is not None:
                item[1].cancel()
        # Everything written so far is whole, in-order rows: keep it.
        writer.commit()
        raise
    finally:
        stats.seconds = time.monotonic() - started
        writer.close()
        if bar is not None:
            bar.close()
    return stats


def score_file(*args, **kwargs) -> RunStats:
    return asyncio.run(score_file_async(*args, **kwargs))
