"""Offline duplicate scoring of product pairs, resumable, through Triton or in-process ONNX Runtime.

    python -m search_tools.batch_score pairs.parquet scores.csv --triton-url 127.0.0.1:8001
    python -m search_tools.batch_score pairs.jsonl scores.jsonl --onnx-dir artifacts/product_onnx

Input: CSV, JSONL or Parquet with columns a_type, a_title, a_description, b_type, b_title,
b_description (missing values allowed) and optionally ``id``. Output (CSV or JSONL, by extension):
one row per input row, in input order: ``row`` (0-based input row number), ``id`` when the input
has one, and ``score`` = P(duplicate).

Exactly-once across interruptions: results are appended in input order and, every
``--commit-rows`` rows, the output is fsync'd and then ``<output>.journal`` gets a line
``{"rows": N, "bytes": B}`` (fsync'd too). A restart truncates the output to the last journaled
``bytes`` (dropping rows written after it) and skips the first ``rows`` input rows. Transient
server errors (unavailable, deadline, model not loaded yet) are retried with exponential
backoff, so a server restart mid-run only delays rows.

A resume is refused (ResumeError, with --overwrite as the way out) unless it would continue the very same
job: the journal's first line records the input's SHA-256 (streamed) and size, and the scorer's identity
(Triton: every model of the ensemble with its served version and the ``artifact_sha256`` of its files that
``searchbar build`` writes into each config; in-process: a hash of the export folder). ``<output>.lock``
holds an exclusive lock while a run writes, so two runs cannot interleave rows in one output.
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol, Sequence

import numpy as np

FIELDS = ("a_type", "a_title", "a_description", "b_type", "b_title", "b_description")
TRITON_INPUTS = ("A_TYPE", "A_TITLE", "A_DESCRIPTION", "B_TYPE", "B_TITLE", "B_DESCRIPTION")
TRITON_OUTPUT = "SCORE"
ID_COLUMN = "id"
JOURNAL_SUFFIX = ".journal"


@dataclass(frozen=True)
class Row:
    index: int                       # 0-based position in the input file
    id: object | None
    fields: tuple[str | None, ...]   # in FIELDS order; None = missing


# --------------------------------------------------------------------------- input

def input_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise ValueError(f"{path}: unsupported input format (use .csv, .jsonl or .parquet)")


def _row(index: int, record: dict) -> Row:
    missing = [f for f in FIELDS if f not in record]
    if missing:
        raise ValueError(f"input row {index} lacks columns {missing}")
    fields = tuple(None if record[f] is None else str(record[f]) for f in FIELDS)
    return Row(index, record.get(ID_COLUMN), fields)


def read_rows(path: str | Path, start: int = 0) -> Iterator[Row]:
    """Rows from ``start`` on, streamed (constant memory)."""
    path = Path(path)
    fmt = input_format(path)
    if fmt == "csv":
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            for index, record in enumerate(reader):
                if index >= start:
                    # CSV cannot tell missing from empty; both mean "field absent".
                    yield _row(index, {k: (v if v != "" else None) for k, v in record.items()})
    elif fmt == "jsonl":
        with open(path, encoding="utf-8") as f:
            index = 0
            for line in f:
                if not line.strip():
                    continue
                if index >= start:
                    yield _row(index, json.loads(line))
                index += 1
    else:
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(str(path))
        index = 0
        for group in range(pf.num_row_groups):
            n = pf.metadata.row_group(group).num_rows
            if index + n <= start:  # skip whole row groups without decoding them
                index += n
                continue
            for record in pf.read_row_group(group).to_pylist():
                if index >= start:
                    yield _row(index, record)
                index += 1


def has_id_column(path: str | Path) -> bool:
    path = Path(path)
    fmt = input_format(path)
    if fmt == "csv":
        with open(path, newline="", encoding="utf-8") as f:
            return ID_COLUMN in (next(csv.reader(f), None) or [])
    if fmt == "jsonl":
        with open(path, encoding="utf-8") as f:
            first = next((line for line in f if line.strip()), None)
        return first is not None and ID_COLUMN in json.loads(first)
    import pyarrow.parquet as pq

    return ID_COLUMN in pq.ParquetFile(str(path)).schema_arrow.names


def count_rows(path: str | Path) -> int | None:
    """Row count when it is cheap to know (Parquet metadata); None otherwise."""
    path = Path(path)
    if input_format(path) == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(str(path)).metadata.num_rows
    return None


def batched(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# --------------------------------------------------------------------------- output + journal

class ResumeError(RuntimeError):
    """The output or journal cannot be resumed safely."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(str(path.parent or Path(".")), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _input_fingerprint(path: Path) -> dict:
    from search_build.artifacts import file_sha256

    return {"input": str(path.resolve()), "input_bytes": path.stat().st_size, "input_sha256": file_sha256(path)}


LOCK_SUFFIX = ".lock"


class OutputLock:
    """An exclusive, non-blocking lock on ``<output>.lock`` (released by the OS if the process dies)."""

    def __init__(self, output: Path):
        import fcntl

        self.path = output.with_name(output.name + LOCK_SUFFIX)
        self.file = open(self.path, "a+b")
        try:
            fcntl.flock(self.file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            raise ResumeError(f"{output} is being written by another run (it holds {self.path.name})") from None

    def release(self) -> None:
        self.file.close()  # closing drops the lock; the file stays (harmless, reused by the next run)


class ResultWriter:
    """Ordered output file plus its progress journal; see the module docstring for the protocol."""

    def __init__(self, output: str | Path, input_path: str | Path, with_id: bool, overwrite: bool = False,
                 model_identity: dict | None = None):
        self.output = Path(output)
        self.journal_path = self.output.with_name(self.output.name + JOURNAL_SUFFIX)
        self.format = "jsonl" if self.output.suffix.lower() in (".jsonl", ".ndjson") else "csv"
        if self.output.suffix.lower() not in (".csv", ".jsonl", ".ndjson"):
            raise ValueError(f"{self.output}: output must be .csv or .jsonl")
        self.with_id = with_id
        self.lock = OutputLock(self.output)
        try:
            self._open(Path(input_path), overwrite, model_identity)
        except BaseException:
            self.lock.release()
            raise

    def _open(self, input_path: Path, overwrite: bool, model_identity: dict | None) -> None:
        fingerprint = {**_input_fingerprint(input_path), "model": model_identity}
        if overwrite:
            self.output.unlink(missing_ok=True)
            self.journal_path.unlink(missing_ok=True)
        self.rows_done, committed_bytes, self.finished = 0, 0, False
        if self.journal_path.exists():
            header, state = self._read_journal()
            if {k: header.get(k) for k in ("input", "input_bytes", "input_sha256")} != {
                    k: fingerprint[k] for k in ("input", "input_bytes", "input_sha256")}:
                raise ResumeError(f"{self.journal_path} was written for other input content ({header.get('input')}, "
                                  f"{header.get('input_bytes')} bytes, sha256 {str(header.get('input_sha256'))[:12]}; "
                                  f"now {fingerprint['input_bytes']} bytes, sha256 {fingerprint['input_sha256'][:12]}): "
                                  "resuming would mix rows of two inputs; use --overwrite to start again")
            if header.get("model") != fingerprint["model"]:
                raise ResumeError(f"{self.journal_path} was scored by another model ({json.dumps(header.get('model'))}; "
                                  f"now {json.dumps(fingerprint['model'])}): resuming would mix two models' scores "
                                  "in one file; use --overwrite to start again")
            self.rows_done, committed_bytes = state["rows"], state["bytes"]
            self.finished = bool(state.get("done"))
            if not self.output.exists() or self.output.stat().st_size < committed_bytes:
                raise ResumeError(f"{self.output} is shorter than its journal says; use --overwrite")
        elif self.output.exists():
            raise ResumeError(f"{self.output} exists without {self.journal_path.name}; use --overwrite")
        else:
            self._append_journal(fingerprint)
        self.rows_written = self.rows_done
        self.file = open(self.output, "r+b" if self.output.exists() else "w+b")
        # Rows written after the last commit may be partial or unjournaled: drop them.
        self.file.truncate(committed_bytes)
        self.file.seek(committed_bytes)
        if committed_bytes == 0:
            if self.format == "csv":
                self.file.write((",".join(["row"] + ([ID_COLUMN] if self.with_id else []) + ["score"]) + "\n").encode())
            self.commit()
            _fsync_dir(self.output)

    def _read_journal(self) -> tuple[dict, dict]:
        data = self.journal_path.read_bytes()
        records, valid = [], 0
        for line in data.split(b"\n")[:-1]:  # only newline-terminated lines are complete
            try:
                records.append(json.loads(line))
            except ValueError:
                break
            valid += len(line) + 1
        if not records:
            raise ResumeError(f"{self.journal_path} is unreadable; use --overwrite")
        if valid < len(data):  # a torn last line from a crash mid-append: cut it off before appending
            with open(self.journal_path, "r+b") as f:
                f.truncate(valid)
                os.fsync(f.fileno())
        header = records[0]
        state = records[-1] if len(records) > 1 else {"rows": 0, "bytes": 0}
        return header, state

    def _append_journal(self, record: dict) -> None:
        with open(self.journal_path, "ab") as f:
            f.write((json.dumps(record, sort_keys=True) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())

    def write(self, rows: Sequence[Row], scores: np.ndarray) -> None:
        if self.format == "csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            for row, score in zip(rows, scores):
                writer.writerow([row.index] + ([_plain(row.id)] if self.with_id else []) + [f"{float(score):.7g}"])
            data = buffer.getvalue()
        else:
            data = "".join(json.dumps({"row": row.index, **({ID_COLUMN: _plain(row.id)} if self.with_id else {}),
                                       "score": float(f"{float(score):.7g}")}) + "\n"
                           for row, score in zip(rows, scores))
        self.file.write(data.encode("utf-8"))
        self.rows_written += len(rows)

    def commit(self, done: bool = False) -> None:
        """Make everything written so far durable, then record it in the journal."""
        self.file.flush()
        os.fsync(self.file.fileno())
        state = {"rows": self.rows_written, "bytes": self.file.tell()}
        if done:
            state["done"] = True
        self._append_journal(state)
        self.rows_done = state["rows"]

    def close(self) -> None:
        self.file.close()
        self.lock.release()


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


# --------------------------------------------------------------------------- scorers

class Scorer(Protocol):
    async def score(self, rows: Sequence[Row]) -> np.ndarray:
        """P(duplicate) float32 [len(rows)]."""

    async def identity(self) -> dict:
        """What scores: recorded in the journal and checked on resume (optional for a scorer)."""

    def is_transient(self, error: BaseException) -> bool:
        """Whether retrying the same request later may succeed."""


_TRANSIENT_STATUSES = {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.RESOURCE_EXHAUSTED",
                       "StatusCode.ABORTED", "StatusCode.CANCELLED"}
_TRANSIENT_MESSAGES = ("unknown model", "not ready", "is not healthy")


def is_transient_triton_error(error: BaseException) -> bool:
    """Whether a tritonclient error is the server's fault for now (retry later), not the request's."""
    status = getattr(error, "status", lambda: None)()
    message = str(error).lower()
    if status in _TRANSIENT_STATUSES:
        return True
    # While a restarted server is still loading its models they are "unknown" or "not ready"; a crashing
    # server answers "stub ... is not healthy" for the moments its Python stubs are dead before it is.
    return status is not None and any(sign in message for sign in _TRANSIENT_MESSAGES)


def triton_pair_inputs(module, columns: Sequence[Sequence[str | None]]) -> list:
    """The ``product_duplicate`` ensemble's six BYTES inputs, [rows, 1] each, from the six field columns in FIELDS
    order (None = the field is missing). ``module``: tritonclient.grpc or tritonclient.grpc.aio."""
    inputs = []
    for name, column in zip(TRITON_INPUTS, columns):
        values = np.array([(v or "").encode("utf-8") for v in column], dtype=np.object_).reshape(-1, 1)
        tensor = module.InferInput(name, list(values.shape), "BYTES")
        tensor.set_data_from_numpy(values)
        inputs.append(tensor)
    return inputs


class TritonScorer:
    """The ``product_duplicate`` ensemble over gRPC (asyncio client: many requests in flight)."""

    def __init__(self, url: str, model: str = "product_duplicate", timeout_s: float = 60.0):
        import tritonclient.grpc.aio as grpcclient

        self._grpc = grpcclient
        self.client = grpcclient.InferenceServerClient(url)
        self.model = model
        self.timeout_s = timeout_s

    async def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if await self.client.is_model_ready(self.model):
                    return
            except Exception as error:  # server not up yet
                if not self.is_transient(error) and "connect" not in str(error).lower():
                    raise
            if time.monotonic() > deadline:
                raise TimeoutError(f"model {self.model} not ready after {timeout_s:.0f}s")
            await asyncio.sleep(1.0)

    async def identity(self) -> dict:
        """Every model the entry runs (ensemble steps, recursively): name, served version, artifact_sha256."""
        from search_build.repository import ARTIFACT_DIGEST_PARAMETER

        models, pending = {}, [self.model]
        while pending:
            name = pending.pop()
            if name in models:
                continue
            config = (await self.client.get_model_config(name, as_json=True))["config"]
            metadata = await self.client.get_model_metadata(name, as_json=True)
            models[name] = {"versions": sorted(metadata.get("versions", [])),
                            "artifact_sha256": config.get("parameters", {}).get(ARTIFACT_DIGEST_PARAMETER, {})
                            .get("string_value")}
            pending += [step["model_name"] for step in config.get("ensemble_scheduling", {}).get("step", [])]
        return {"triton_model": self.model, "models": dict(sorted(models.items()))}

    async def score(self, rows: Sequence[Row]) -> np.ndarray:
        inputs = triton_pair_inputs(self._grpc, [[row.fields[c] for row in rows] for c in range(len(FIELDS))])
        outputs = [self._grpc.InferRequestedOutput(TRITON_OUTPUT)]
        result = await self.client.infer(self.model, inputs, outputs=outputs, client_timeout=self.timeout_s)
        return result.as_numpy(TRITON_OUTPUT).reshape(-1).astype(np.float32)

    def is_transient(self, error: BaseException) -> bool:
        return is_transient_triton_error(error)

    async def close(self) -> None:
        await self.client.close()


class OnnxScorer:
    """The same chain in-process (tokenize -> encoder -> head) for throughput comparison."""

    def __init__(self, export_dir: str | Path, intra_op_threads: int = 0, engine: str = "onnxruntime"):
        from search_backends.product_onnx import ProductOnnxModels

        self.models = ProductOnnxModels(export_dir, intra_op_threads=intra_op_threads, engine=engine)
        self.export_dir = Path(export_dir)
        self.engine = engine

    async def identity(self) -> dict:
        from search_build.artifacts import folder_sha256

        return {"onnx_dir": str(self.export_dir.resolve()), "artifact_sha256": folder_sha256(self.export_dir),
                **({"engine": self.engine} if self.engine != "onnxruntime" else {})}

    async def score(self, rows: Sequence[Row]) -> np.ndarray:
        columns = [[row.fields[c] for row in rows] for c in range(len(FIELDS))]
        # ONNX Runtime releases the GIL: run in a thread so the event loop keeps reading/writing.
        return await asyncio.to_thread(self.models.score_pairs, *columns)

    def is_transient(self, error: BaseException) -> bool:
        return False

    async def close(self) -> None:
        pass


# --------------------------------------------------------------------------- pipeline

@dataclass
class RunStats:
    rows: int = 0
    resumed_from: int = 0
    retries: int = 0
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


async def _score_with_retry(scorer: Scorer, rows: Sequence[Row], stats: RunStats, max_retry_s: float,
                            backoff_s: float, max_backoff_s: float) -> np.ndarray:
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
            delay = min(max_backoff_s, backoff_s * 2 ** attempt) * (0.5 + random.random() / 2)
            attempt += 1
            await asyncio.sleep(delay)


async def score_file_async(input_path: str | Path, output_path: str | Path, scorer: Scorer, *,
                           rows_per_request: int = 32, in_flight: int = 8, commit_rows: int = 1024,
                           max_retry_s: float = 600.0, backoff_s: float = 0.5, max_backoff_s: float = 10.0,
                           overwrite: bool = False, progress: bool = True) -> RunStats:
    input_path = Path(input_path)
    identity = await scorer.identity() if hasattr(scorer, "identity") else None
    writer = ResultWriter(output_path, input_path, has_id_column(input_path), overwrite=overwrite,
                          model_identity=identity)
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
            queue.put_nowait((rows, asyncio.ensure_future(
                _score_with_retry(scorer, rows, stats, max_retry_s, backoff_s, max_backoff_s))))
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    backend = parser.add_mutually_exclusive_group(required=True)
    backend.add_argument("--triton-url", help="gRPC address, e.g. 127.0.0.1:8001")
    backend.add_argument("--onnx-dir", type=Path, help="in-process engine on the exported graphs (product_export output)")
    parser.add_argument("--engine", choices=("onnxruntime", "openvino"), default="onnxruntime",
                        help="--onnx-dir's encoder engine (FP32 either way: the product heads' parity gate)")
    parser.add_argument("--model", default="product_duplicate")
    parser.add_argument("--rows-per-request", type=int, default=32)
    parser.add_argument("--in-flight", type=int, default=None, help="requests in flight (default 16 Triton, 2 ONNX)")
    parser.add_argument("--commit-rows", type=int, default=1024, help="journal a durable checkpoint this often")
    parser.add_argument("--max-retry-seconds", type=float, default=600.0)
    parser.add_argument("--ready-timeout", type=float, default=120.0)
    parser.add_argument("--overwrite", action="store_true", help="discard an existing output and journal")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    async def run() -> RunStats:
        scorer: TritonScorer | OnnxScorer
        if args.triton_url:
            scorer = TritonScorer(args.triton_url, args.model)
            await scorer.wait_ready(args.ready_timeout)
        else:
            scorer = OnnxScorer(args.onnx_dir, engine=args.engine)
        try:
            return await score_file_async(
                args.input, args.output, scorer, rows_per_request=args.rows_per_request,
                in_flight=args.in_flight or (16 if args.triton_url else 2), commit_rows=args.commit_rows,
                max_retry_s=args.max_retry_seconds, overwrite=args.overwrite, progress=not args.no_progress)
        finally:
            await scorer.close()

    stats = asyncio.run(run())
    print(json.dumps({"rows_scored": stats.rows, "resumed_from_row": stats.resumed_from, "retries": stats.retries,
                      "seconds": round(stats.seconds, 2), "rows_per_second": round(stats.rows_per_second, 1),
                      "output": str(args.output)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
