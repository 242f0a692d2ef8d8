"""The lexicon repair's learnt word reranker: edit alignment, error model, scoring, the guard wired to it.

Pure logic, no server: the served path runs the same `SpellGuard` (tests/test_spell_correct.py) and the
shipped reranker's quality is checked on the held-out files (tests/test_spell_model.py).
"""

from __future__ import annotations

import json

import pytest

from search_backends.contracts.spell_correct import RERANKER_FILE, SERVING_FILES
from search_backends.spell_guard import LexiconRepair, SpellGuard
from search_backends.spell_rerank import FEATURES, WordReranker
from support.project import PROJECT_ROOT

SPELL_DIR = PROJECT_ROOT / "models" / "spell_bart"


LEXICON = {
    "metallica": 3.9,
    "metallic": 3.8,
    "enter": 5.0,
    "sandman": 3.0,
    "taylor": 4.5,
    "swift": 4.4,
    "swit": 1.6,
    "restrict": 3.8,
    "district": 5.0,
    "access": 5.0,
}


@pytest.fixture(scope="module")
def learnt_guard():
    reranker = WordReranker(
        {"zipf": 1.0, "keep_zipf": 1.6, "keep_unknown": -4.0, "first_letter": -2.0, "distance_2": -1.5},
        keep_margin=0.5,
        gate_zipf=2.0,
        candidate_min_zipf=1.0,
    )
    return SpellGuard(LEXICON, 1.0, LexiconRepair(LEXICON, reranker=reranker))


def test_guard_with_reranker_decides_from_the_typed_word(learnt_guard):
    assert learnt_guard.repair.repair_below_zipf == 2.0  # the reranker's gate
    # the model's "district" was frequent enough for the guard; the reranker, from "ristrict", prefers restrict
    assert learnt_guard.apply("ristrict access", "district access") == "restrict access"
    assert learnt_guard.apply("metalica enter sandman", "metalica enter sandman") == "metallica enter sandman"
    # correct words and words above the gate are never reconsidered; numbers pass through
    assert learnt_guard.apply("taylor swift 2024", "taylor swit 2024") == "taylor swift 2024"
    assert learnt_guard.apply("enter sandman", "enter sandman") == "enter sandman"


def test_shipped_reranker_is_served_and_learnt_from_training_data_only():
    assert RERANKER_FILE in SERVING_FILES
    body = json.loads((SPELL_DIR / RERANKER_FILE).read_text(encoding="utf-8"))
    reranker = WordReranker.load(SPELL_DIR / RERANKER_FILE)
    assert set(reranker.weights) == set(FEATURES) and reranker.errors is not None
    report = body["report"]
    # fitted on its own seed of the training distribution; the held-aside fifth shows it generalises
    assert report["held_aside"]["fixed_when_misspelled"] > 0.85 and report["held_aside"]["kept_when_correct"] > 0.9
    assert (SPELL_DIR / RERANKER_FILE).stat().st_size < 1_000_000
