"""The pairs to score, streamed from CSV, JSONL or Parquet in constant memory."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from search_backends.contracts.product_search import PAIR_FIELDS


FIELDS = tuple(name.lower() for name in PAIR_FIELDS)  # the input's columns: the ensemble's inputs, lower case
ID_COLUMN = "id"


@dataclass(frozen=True)
class Row:
    index: int  # 0-based position in the input file
    id: object | None
    fields: tuple[str | None, ...]  # in FIELDS order; None = missing


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
