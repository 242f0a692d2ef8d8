"""perf_analyzer / Model Analyzer input data for every pipeline, from the project's sample texts.

Regenerate the committed files with ``searchbar data perf-inputs`` (or ``searchbar sweep``,
which writes the file of the pipeline it profiles when it is missing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from search_backends.contracts import product_search as P
from search_backends.contracts import query_embedding as Q
from search_backends.contracts import search_bar as C
from search_backends.contracts import spell_correct as S

from .perf import INPUT_DATA_DIR, write_input_data
from .sample_queries import MISSPELLED_MUSIC_QUERIES, MUSIC_QUERIES, PRODUCT_PAIRS, SHOPPING_QUERIES


def _text(queries: list[str]) -> Iterator[dict[str, str]]:
    return ({Q.TEXT: q} for q in queries)


def _with(rows: Iterator[dict], controls: dict) -> Iterator[dict]:
    """Every row also sends the ensemble's optional controls, at the values the server would use
    without them (so the load is the default request, and the file names every ensemble input)."""
    return ({**row, **controls} for row in rows)


def _intent_controls() -> dict[str, int]:
    from search_build.pipelines import build_pipeline

    head = build_pipeline(P.INTENT, fuse_text=False).model(P.INTENT_HEAD)  # the default either way
    return {P.TOP_K: int(head.parameters[P.TOP_K_PARAMETER])}


def _spell_controls() -> dict[str, str | int | float | bool]:
    """The checkpoint's generation defaults (generation_config.json over Hugging Face's), guard on."""
    from search_backends.spell_generation.params import HF_DEFAULTS, GenerationDefaults
    from search_build.pipelines.spell_correct import DEFAULT_CHECKPOINT

    d = GenerationDefaults.from_model_dir(DEFAULT_CHECKPOINT)
    v = {**HF_DEFAULTS, **d.values}
    max_length = int(v["max_length"])
    if "max_length" not in d.values and d.max_position_embeddings is not None:
        max_length = min(max_length + 1, d.max_position_embeddings)
    return {
        S.NUM_BEAMS: int(v["num_beams"]),
        S.MAX_NEW_TOKENS: int(v.get("max_new_tokens") or max_length - 1),
        S.MIN_LENGTH: int(v["min_length"]),
        S.LENGTH_PENALTY: float(v["length_penalty"]),
        S.NO_REPEAT_NGRAM_SIZE: int(v["no_repeat_ngram_size"]),
        S.EARLY_STOPPING: str(v["early_stopping"]).lower(),
        S.GUARD_INPUT: True,
    }


def _pairs() -> Iterator[dict[str, str]]:
    for a, b in PRODUCT_PAIRS:
        yield dict(zip(P.PAIR_FIELDS, (*a, *b)))  # each product is (type, title, description), like its fields


# pipeline -> rows of all its ensemble inputs (one request each; numbers for INT32 / FP32 inputs)
ROWS = {
    Q.QUERY_EMBEDDING: lambda: _text(MUSIC_QUERIES),
    S.SPELL_CORRECT: lambda: _with(_text(MISSPELLED_MUSIC_QUERIES), _spell_controls()),
    P.INTENT: lambda: _with(_text(SHOPPING_QUERIES), _intent_controls()),
    P.DUPLICATE: _pairs,
    # search_bar: misspelled queries, top 10, both stages on (the defaults, named so the file lists every input)
    C.SEARCH_BAR: lambda: _with(
        _text(MISSPELLED_MUSIC_QUERIES), {C.TOP_K: C.DEFAULT_TOP_K, C.CORRECT_SPELLING: True, C.DETECT_INTENT: True}
    ),
}


def input_data_path(pipeline: str, directory: Path = INPUT_DATA_DIR) -> Path:
    return Path(directory) / f"{pipeline}.json"


def write_pipeline_input_data(pipeline: str, directory: Path = INPUT_DATA_DIR) -> Path:
    if pipeline not in ROWS:
        raise KeyError(f"no sample inputs for pipeline {pipeline!r}; known: {', '.join(ROWS)}")
    return write_input_data(ROWS[pipeline](), input_data_path(pipeline, directory))


def write_all(directory: Path = INPUT_DATA_DIR) -> list[Path]:
    return [write_pipeline_input_data(name, directory) for name in ROWS]


def run(args) -> None:
    for path in write_all():
        print(f"wrote {path}")


if __name__ == "__main__":
    from search_tools.cli import run_as_main

    run_as_main(__spec__.name)
