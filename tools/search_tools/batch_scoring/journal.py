"""The ordered output file and its journal: every row exactly once across interruptions.

Results are appended in input order and, every ``--commit-rows`` rows, the output is fsync'd and then
``<output>.journal`` gets a line ``{"rows": N, "bytes": B}`` (fsync'd too). A restart truncates the output to the
last journaled ``bytes`` (dropping rows written after it) and skips the first ``rows`` input rows.

A resume is refused (ResumeError, with --overwrite as the way out) unless it would continue the very same
job: the journal's first line records the input's SHA-256 (streamed) and size, and the scorer's identity
(Triton: every model of the ensemble with its served version and the ``artifact_sha256`` of its files that
``searchbar build`` writes into each config; in-process: a hash of the export folder). ``<output>.lock``
holds an exclusive lock while a run writes, so two runs cannot interleave rows in one output.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from search_backends.contracts.product_search import SCORE

from .readers import ID_COLUMN, Row


SCORE_COLUMN = SCORE.lower()
JOURNAL_SUFFIX = ".journal"


class ResumeError(RuntimeError):
    """The output or journal cannot be resumed safely."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(str(path.parent or Path(".")), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _input_fingerprint(path: Path) -> dict:
    from search_build.repository.artifacts import file_sha256

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

    def __init__(
        self,
        output: str | Path,
        input_path: str | Path,
        with_id: bool,
        overwrite: bool = False,
        model_identity: dict | None = None,
    ):
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
                k: fingerprint[k] for k in ("input", "input_bytes", "input_sha256")
            }:
                raise ResumeError(
                    f"{self.journal_path} was written for other input content ({header.get('input')}, "
                    f"{header.get('input_bytes')} bytes, sha256 {str(header.get('input_sha256'))[:12]}; "
                    f"now {fingerprint['input_bytes']} bytes, sha256 {fingerprint['input_sha256'][:12]}): "
                    "resuming would mix rows of two inputs; use --overwrite to start again"
                )
            if header.get("model") != fingerprint["model"]:
                raise ResumeError(
                    f"{self.journal_path} was scored by another model ({json.dumps(header.get('model'))}; "
                    f"now {json.dumps(fingerprint['model'])}): resuming would mix two models' scores "
                    "in one file; use --overwrite to start again"
                )
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
                self.file.write(
                    (",".join(["row"] + ([ID_COLUMN] if self.with_id else []) + [SCORE_COLUMN]) + "\n").encode()
                )
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
            data = "".join(
                json.dumps(
                    {
                        "row": row.index,
                        **({ID_COLUMN: _plain(row.id)} if self.with_id else {}),
                        SCORE_COLUMN: float(f"{float(score):.7g}"),
                    }
                )
                + "\n"
                for row, score in zip(rows, scores)
            )
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
