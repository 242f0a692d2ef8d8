"""File reading/writing, ordering, retry and resume logic of the batch scorer, with a fake scorer."""

from __future__ import annotations

import asyncio
import csv
import json
import random
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search_tools.batch_scoring.journal import ResumeError
from search_tools.batch_scoring.readers import FIELDS, read_rows
from search_tools.batch_scoring.runner import score_file


def fake_probability(fields) -> float:
    """Deterministic stand-in for a model: a function of the row's content only."""
    return (zlib.crc32(json.dumps(fields).encode()) % 10_000) / 10_000


class FakeScorer:
    """Scores rows after random delays (so requests finish out of order); can fail on cue."""

    def __init__(self, transient_failures: int = 0, fatal_after_calls: int | None = None, seed: int = 0):
        self.rng = random.Random(seed)
        self.transient_failures = transient_failures
        self.fatal_after_calls = fatal_after_calls
        self.calls = 0
        self.scored_rows: list[int] = []
        self.max_concurrent = 0
        self._active = 0

    async def score(self, rows):
        self.calls += 1
        if self.fatal_after_calls is not None and self.calls > self.fatal_after_calls:
            raise RuntimeError("fatal: bad request")
        if self.transient_failures > 0:
            self.transient_failures -= 1
            raise ConnectionError("server unavailable")
        self._active += 1
        self.max_concurrent = max(self.max_concurrent, self._active)
        try:
            await asyncio.sleep(self.rng.random() * 0.003)
        finally:
            self._active -= 1
        self.scored_rows.extend(r.index for r in rows)
        return np.array([fake_probability(r.fields) for r in rows], dtype=np.float32)

    def is_transient(self, error):
        return isinstance(error, ConnectionError)


def make_records(n: int, seed: int = 0, with_id: bool = True) -> list[dict]:
    rng = random.Random(seed)
    records = []
    for i in range(n):
        record = {f: (None if rng.random() < 0.15 else f'{f} {rng.randrange(1000)}, "q"\n{i}') for f in FIELDS}
        if with_id:
            record["id"] = f"p{i:05d}"
        records.append(record)
    return records


def write_input(path, records) -> None:
    if path.suffix == ".csv":
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows([{k: ("" if v is None else v) for k, v in r.items()} for r in records])
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    else:
        pa = pytest.importorskip("pyarrow", exc_type=ImportError)  # pyarrow may be built for another numpy
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(records), str(path), row_group_size=37)


def read_output(path) -> list[dict]:
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            return [{**r, "row": int(r["row"]), "score": float(r["score"])} for r in csv.DictReader(f)]
    return [json.loads(line) for line in path.read_text().splitlines()]


def expected_scores(records) -> list[float]:
    return [fake_probability(tuple(r[f] for f in FIELDS)) for r in records]


def assert_complete(output, records, with_id=True) -> None:
    got = read_output(output)
    assert [r["row"] for r in got] == list(range(len(records))), "every row exactly once, in input order"
    np.testing.assert_allclose([r["score"] for r in got], expected_scores(records), rtol=1e-6)
    if with_id:
        assert [r["id"] for r in got] == [r["id"] for r in records]
    else:
        assert all("id" not in r for r in got)


@pytest.mark.parametrize("in_suffix", [".csv", ".jsonl", ".parquet"])
@pytest.mark.parametrize("out_suffix", [".csv", ".jsonl"])
def test_scores_every_row_in_input_order(tmp_path, in_suffix, out_suffix):
    records = make_records(203)
    src, out = tmp_path / f"pairs{in_suffix}", tmp_path / f"scores{out_suffix}"
    write_input(src, records)
    scorer = FakeScorer()
    stats = score_file(src, out, scorer, rows_per_request=8, in_flight=6, commit_rows=50, progress=False)
    assert stats.rows == 203
    assert_complete(out, records)
    assert scorer.max_concurrent > 1, "requests should overlap"
    assert scorer.max_concurrent <= 7, "the in-flight window bounds concurrency"


def test_missing_fields_reach_the_scorer_as_none(tmp_path):
    records = make_records(40)
    src = tmp_path / "pairs.jsonl"
    write_input(src, records)
    rows = list(read_rows(src))
    assert [r.fields for r in rows] == [tuple(r[f] for f in FIELDS) for r in records]
    assert any(v is None for r in rows for v in r.fields)
    assert [r.index for r in list(read_rows(src, start=25))] == list(range(25, 40))


def test_input_without_id_column(tmp_path):
    records = make_records(30, with_id=False)
    src, out = tmp_path / "pairs.csv", tmp_path / "scores.csv"
    write_input(src, records)
    score_file(src, out, FakeScorer(), rows_per_request=4, progress=False)
    assert_complete(out, records, with_id=False)


def test_transient_errors_are_retried_without_losing_or_duplicating_rows(tmp_path):
    records = make_records(120)
    src, out = tmp_path / "pairs.jsonl", tmp_path / "scores.jsonl"
    write_input(src, records)
    scorer = FakeScorer(transient_failures=5)  # e.g. the server restarting mid-run
    stats = score_file(
        src, out, scorer, rows_per_request=16, in_flight=4, backoff_s=0.001, max_backoff_s=0.01, progress=False
    )
    assert stats.retries == 5
    assert_complete(out, records)
    assert sorted(scorer.scored_rows) == list(range(120))


def test_transient_errors_give_up_after_max_retry_time(tmp_path):
    records = make_records(20)
    src, out = tmp_path / "pairs.jsonl", tmp_path / "scores.csv"
    write_input(src, records)
    with pytest.raises(ConnectionError):
        score_file(
            src,
            out,
            FakeScorer(transient_failures=10**9),
            rows_per_request=4,
            max_retry_s=0.05,
            backoff_s=0.001,
            max_backoff_s=0.005,
            progress=False,
        )


@pytest.mark.parametrize("out_suffix", [".csv", ".jsonl"])
def test_resume_after_failure_and_torn_writes(tmp_path, out_suffix):
    records = make_records(300)
    src, out = tmp_path / "pairs.csv", tmp_path / f"scores{out_suffix}"
    write_input(src, records)
    with pytest.raises(RuntimeError, match="fatal"):
        score_file(
            src, out, FakeScorer(fatal_after_calls=11), rows_per_request=10, in_flight=3, commit_rows=25, progress=False
        )
    journal = out.with_name(out.name + ".journal")
    last = json.loads(journal.read_text().splitlines()[-1])
    assert 0 < last["rows"] < 300 and last["bytes"] == out.stat().st_size
    # A crash (SIGKILL, power loss) can leave rows written but not journaled, and a torn journal line.
    with open(out, "ab") as f:
        f.write(b"999,junk,0.5\n9")
    with open(journal, "ab") as f:
        f.write(b'{"rows": 99')

    scorer = FakeScorer()
    stats = score_file(src, out, scorer, rows_per_request=10, in_flight=3, commit_rows=25, progress=False)
    assert stats.resumed_from == last["rows"]
    assert min(scorer.scored_rows) == last["rows"], "rows already journaled are not scored again"
    assert_complete(out, records)
    # Finished runs are not redone.
    again = FakeScorer()
    assert score_file(src, out, again, progress=False).rows == 0 and again.calls == 0


def test_resume_refuses_a_different_input_or_an_unjournaled_output(tmp_path):
    src, out = tmp_path / "pairs.jsonl", tmp_path / "scores.csv"
    write_input(src, make_records(10))
    score_file(src, out, FakeScorer(), progress=False)
    write_input(src, make_records(12))
    with pytest.raises(ResumeError):
        score_file(src, out, FakeScorer(), progress=False)
    out.with_name(out.name + ".journal").unlink()
    with pytest.raises(ResumeError):
        score_file(src, out, FakeScorer(), progress=False)
    score_file(src, out, FakeScorer(), progress=False, overwrite=True)
    assert_complete(out, make_records(12))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(0, 90),
    rows_per_request=st.integers(1, 17),
    in_flight=st.integers(1, 5),
    commit_rows=st.integers(1, 40),
    fail_after=st.integers(0, 12),
)
def test_any_interruption_point_resumes_to_the_same_output(
    tmp_path_factory, n, rows_per_request, in_flight, commit_rows, fail_after
):
    tmp = tmp_path_factory.mktemp("resume")
    records = make_records(n, seed=n)
    src, out = tmp / "pairs.jsonl", tmp / "scores.csv"
    if n:
        write_input(src, records)
    else:
        src.write_text("")
    try:
        score_file(
            src,
            out,
            FakeScorer(fatal_after_calls=fail_after),
            rows_per_request=rows_per_request,
            in_flight=in_flight,
            commit_rows=commit_rows,
            progress=False,
        )
    except RuntimeError:
        pass
    score_file(
        src,
        out,
        FakeScorer(),
        rows_per_request=rows_per_request,
        in_flight=in_flight,
        commit_rows=commit_rows,
        progress=False,
    )
    if n:
        assert_complete(out, records)
    else:
        assert read_output(out) == []


@pytest.mark.parametrize(
    "status, message, transient",
    [
        ("StatusCode.UNAVAILABLE", "failed to connect to all addresses", True),
        (
            "StatusCode.INTERNAL",
            "in ensemble 'product_duplicate', Stub process 'product_encoder_0_0' is not healthy.",
            True,
        ),
        ("StatusCode.UNAVAILABLE", "Request for unknown model: 'product_duplicate' is not found", True),
        ("StatusCode.INVALID_ARGUMENT", "A_TITLE: expected BYTES", False),
        ("StatusCode.INTERNAL", "division by zero in head", False),
    ],
)
def test_triton_scorer_retries_server_faults_not_request_faults(status, message, transient):
    from tritonclient.utils import InferenceServerException

    from search_tools.batch_scoring.scorers import is_transient_triton_error

    assert is_transient_triton_error(InferenceServerException(message, status=status)) is transient


class IdentifiedScorer(FakeScorer):
    def __init__(self, model: str = "v1", **kwargs):
        super().__init__(**kwargs)
        self.model = model

    async def identity(self):
        return {"model": self.model}


def test_resume_refuses_edited_input_of_the_same_size(tmp_path):
    src, out = tmp_path / "pairs.jsonl", tmp_path / "scores.csv"
    records = make_records(60)
    write_input(src, records)
    with pytest.raises(RuntimeError, match="fatal"):
        score_file(src, out, IdentifiedScorer(fatal_after_calls=3), rows_per_request=5, commit_rows=5, progress=False)
    text = src.read_text(encoding="utf-8")
    edited = text.replace("a_title 1", "a_title 7", 1)
    assert edited != text and len(edited) == len(text)
    src.write_text(edited, encoding="utf-8")
    with pytest.raises(ResumeError, match="other input content"):
        score_file(src, out, IdentifiedScorer(), progress=False)


def test_resume_refuses_another_model(tmp_path):
    src, out = tmp_path / "pairs.jsonl", tmp_path / "scores.csv"
    write_input(src, make_records(60))
    with pytest.raises(RuntimeError, match="fatal"):
        score_file(
            src, out, IdentifiedScorer("v1", fatal_after_calls=3), rows_per_request=5, commit_rows=5, progress=False
        )
    with pytest.raises(ResumeError, match="another model"):
        score_file(src, out, IdentifiedScorer("v2"), progress=False)
    stats = score_file(src, out, IdentifiedScorer("v1"), rows_per_request=5, progress=False)  # the same model resumes
    assert stats.resumed_from > 0
    assert_complete(out, make_records(60))
    journal = json.loads(out.with_name(out.name + ".journal").read_text().splitlines()[0])
    assert journal["model"] == {"model": "v1"} and len(journal["input_sha256"]) == 64


def test_two_runs_cannot_write_one_output(tmp_path):
    from search_tools.batch_scoring.journal import OutputLock

    src, out = tmp_path / "pairs.jsonl", tmp_path / "scores.csv"
    write_input(src, make_records(10))
    held = OutputLock(out)  # as another run (another process would hold the same flock)
    try:
        with pytest.raises(ResumeError, match="another run"):
            score_file(src, out, FakeScorer(), progress=False)
    finally:
        held.release()
    score_file(src, out, FakeScorer(), progress=False)
    assert_complete(out, make_records(10))
