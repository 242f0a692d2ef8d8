"""perf_analyzer / Model Analyzer input data for every pipeline, from the project's sample texts.

Regenerate the committed files with ``python -m search_tools.input_data`` (or ``searchbar sweep``,
which writes the file of the pipeline it profiles when it is missing).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from .perf import INPUT_DATA_DIR, write_input_data
from .sample_queries import MISSPELLED_MUSIC_QUERIES, MUSIC_QUERIES, PRODUCT_PAIRS, SHOPPING_QUERIES


def _text(queries: list[str]) -> Iterator[dict[str, str]]:
    return ({"TEXT": q} for q in queries)


def _pairs() -> Iterator[dict[str, str]]:
    for a, b in PRODUCT_PAIRS:
        row = {}
        for side, (kind, title, description) in (("A", a), ("B", b)):
            row.update({f"{side}_TYPE": kind, f"{side}_TITLE": title, f"{side}_DESCRIPTION": description})
        yield row


# pipeline -> rows of its ensemble inputs (one request each)
ROWS = {
    "query_embedding": lambda: _text(MUSIC_QUERIES),
    "spell_correct": lambda: _text(MISSPELLED_MUSIC_QUERIES),
    "query_intent": lambda: _text(SHOPPING_QUERIES),
    "product_duplicate": _pairs,
}


def input_data_path(pipeline: str, directory: Path = INPUT_DATA_DIR) -> Path:
    return Path(directory) / f"{pipeline}.json"


def write_pipeline_input_data(pipeline: str, directory: Path = INPUT_DATA_DIR) -> Path:
    if pipeline not in ROWS:
        raise KeyError(f"no sample inputs for pipeline {pipeline!r}; known: {', '.join(ROWS)}")
    return write_input_data(ROWS[pipeline](), input_data_path(pipeline, directory))


def write_all(directory: Path = INPUT_DATA_DIR) -> list[Path]:
    return [write_pipeline_input_data(name, directory) for name in ROWS]


if __name__ == "__main__":
    for path in write_all():
        print(f"wrote {path}")
