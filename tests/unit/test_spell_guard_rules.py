"""The no-damage guard's rules (search_backends.spell_guard): which changes it keeps, its switch, its lexicon file."""

from __future__ import annotations

import numpy as np
import pytest

from search_backends.spell_guard import SpellGuard, guard_switch, read_lexicon, write_lexicon
from search_backends.text_input import InputError
from support.spell_lexicon import LEXICON


@pytest.fixture
def guard():
    return SpellGuard(LEXICON, min_gain=1.0)


@pytest.mark.parametrize(
    "source, model, expected",
    [
        ("taylor swift", "taylor swit", "taylor swift"),  # a known word never becomes a rarer one
        ("taylor swit", "taylor swift", "taylor swift"),  # a rare typo becomes a much more frequent word
        ("metalica enter sandman", "metallica enter sandman", "metallica enter sandman"),  # unknown -> known
        ("metalica enter sandman", "metalicca enter sandman", "metalica enter sandman"),  # unknown -> unknown: kept
        ("workut hits 2024", "workout hits he", "workout hits 2024"),  # numbers never change, fixes elsewhere stay
        ("frank sinatr fly me to the moon", "frank sinater fly meothe tomon", "frank sinatr fly me to the moon"),
        ("the weeknd", "the weekend", "the weeknd"),  # 2.7 -> 5.1 passes the gain... see min_gain test below
    ],
)
def test_guard_keeps_only_supported_changes(guard, source, model, expected):
    if source == "the weeknd":
        guard = SpellGuard(LEXICON, min_gain=3.0)
    assert guard.apply(source, model) == expected


def test_guard_merges_and_splits_words_only_into_known_words(guard):
    assert guard.apply("rockand roll", "rock and roll") == "rock and roll"  # unknown -> known phrase
    assert guard.apply("rock and roll", "rockandroll") == "rock and roll"  # known -> rarer: kept
    assert guard.apply("taylor swift", "taylor") == "taylor swift"  # a dropped word comes back
    assert guard.apply("taylor", "taylor swift") == "taylor"  # an invented word is not added
    assert guard.apply_batch(["taylor swit", ""], ["taylor swift", ""]) == ["taylor swift", ""]


def test_guard_min_gain_is_the_frequency_ratio(guard):
    assert guard.apply("the weeknd", "the weekend") == "the weekend"  # x250 more frequent: accepted at gain 1
    assert SpellGuard(LEXICON, min_gain=3.0).apply("the weeknd", "the weekend") == "the weeknd"


def test_lexicon_round_trip(tmp_path):
    write_lexicon(tmp_path / "lexicon.tsv", LEXICON)
    assert read_lexicon(tmp_path / "lexicon.tsv") == LEXICON
    assert SpellGuard.from_model_dir(tmp_path).lexicon == LEXICON
    assert SpellGuard.from_model_dir(tmp_path / "missing") is None


def test_guard_switch_input_parameter_and_errors():
    assert guard_switch(None, {}) is True
    assert guard_switch(None, {"guard": False}) is False
    assert guard_switch(None, {"guard": "false"}) is False
    assert guard_switch(np.array([[False]]), {"guard": True}) is False  # the input wins
    with pytest.raises(InputError, match="guard"):
        guard_switch(None, {"guard": "maybe"})
    with pytest.raises(InputError, match="GUARD"):
        guard_switch(np.array([True, False]), {})


# --------------------------------------------------------------------------- the adapter, pb_utils mocked
