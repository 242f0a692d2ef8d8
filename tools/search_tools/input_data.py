"""perf_analyzer / Model Analyzer input data for every pipeline, from the project's sample texts.

Regenerate the committed files with ``searchbar data perf-inputs`` (or ``searchbar sweep``,
which writes the file of the pipeline it profiles when it is missing).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from .perf import INPUT_DATA_DIR, write_input_data
from .sample_queries import MISSPELLED_MUSIC_QUERIES, MUSIC_QUERIES, PRODUCT_PAIRS, SHOPPING_QUERIES


def _text(queries: list[str]) -> Iterator[dict[str, str]]:
    return ({"TEXT": q} for q in queries)


def _with(rows: Iterator[dict], controls: dict) -> Iterator[dict]:
    """Every row also sends the ensemble's optional controls, at the values the server would use
    without them (so the load is the default request, and the file names every ensemble input)."""
    return ({**row, **controls} for row in rows)


def _intent_controls() -> dict[str, int]:
    from search_build.pipelines import build_pipeline

    head = build_pipeline("query_intent", fuse_text=False).model("query_intent_head")  # the default either way
    return {"TOP_K": int(head.parameters["top_k"])}


def _spell_controls() -> dict[str, str | int | float | bool]:
    """The checkpoint's generation defaults (generation_config.json over Hugging Face's), guard on."""
    from search_backends.contracts.spell_correct import (EARLY_STOPPING, GUARD_INPUT, LENGTH_PENALTY, MAX_NEW_TOKENS,
                                                         MIN_LENGTH, NO_REPEAT_NGRAM_SIZE, NUM_BEAMS)
    from search_backends.spell_generation.params import HF_DEFAULTS, GenerationDefaults
    from search_build.pipelines.spell_correct import DEFAULT_CHECKPOINT

    d = GenerationDefaults.from_model_dir(DEFAULT_CHECKPOINT)
    v = {**HF_DEFAULTS, **d.values}
    max_length = int(v["max_length"])
    if "max_length" not in d.values and d.max_position_embeddings is not None:
        max_length = min(max_length + 1, d.max_position_embeddings)
    return {NUM_BEAMS: int(v["num_beams"]), MAX_NEW_TOKENS: int(v.get("max_new_tokens") or max_length - 1),
            MIN_LENGTH: int(v["min_length"]), LENGTH_PENALTY: float(v["length_penalty"]),
            NO_REPEAT_NGRAM_SIZE: int(v["no_repeat_ngram_size"]),
            EARLY_STOPPING: str(v["early_stopping"]).lower(), GUARD_INPUT: True}


def _pairs() -> Iterator[dict[str, str]]:
    for a, b in PRODUCT_PAIRS:
        row = {}
        for side, (kind, title, description) in (("A", a), ("B", b)):
            row.update({f"{side}_TYPE": kind, f"{side}_TITLE": title, f"{side}_DESCRIPTION": description})
        yield row


# pipeline -> rows of all its ensemble inputs (one request each; numbers for INT32 / FP32 inputs)
ROWS = {
    "query_embedding": lambda: _text(MUSIC_QUERIES),
    "spell_correct": lambda: _with(_text(MISSPELLED_MUSIC_QUERIES), _spell_controls()),
    "query_intent": lambda: _with(_text(SHOPPING_QUERIES), _intent_controls()),
    "product_duplicate": _pairs,
    # search_bar: misspelled queries, top 10, both stages on (the defaults, named so the file lists every input)
    "search_bar": lambda: _with(_text(MISSPELLED_MUSIC_QUERIES), {"TOP_K": 10, "CORRECT_SPELLING": True,
                                                                  "DETECT_INTENT": True}),
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
