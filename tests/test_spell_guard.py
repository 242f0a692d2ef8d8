"""The no-damage guard (search_backends.spell_guard) and the spell_detokenize adapter, with pb_utils mocked."""
from __future__ import annotations

import json

import numpy as np
import pytest

from search_backends.spell_guard import SpellGuard, guard_switch, read_lexicon, write_lexicon
from search_backends.text_input import InputError

LEXICON = {"taylor": 4.5, "swift": 4.2, "swit": 1.6, "metallica": 3.2, "enter": 5.0, "sandman": 2.9, "the": 7.7,
           "weeknd": 2.7, "weekend": 5.1, "hits": 4.6, "workout": 4.0, "he": 6.5, "rock": 5.0, "and": 7.4,
           "roll": 4.6, "fly": 4.7, "me": 6.8, "to": 7.4, "moon": 4.8, "sinatra": 3.3, "frank": 4.6, "rockandroll": 1.0}


@pytest.fixture
def guard():
    return SpellGuard(LEXICON, min_gain=1.0)


@pytest.mark.parametrize("source, model, expected", [
    ("taylor swift", "taylor swit", "taylor swift"),  # a known word never becomes a rarer one
    ("taylor swit", "taylor swift", "taylor swift"),  # a rare typo becomes a much more frequent word
    ("metalica enter sandman", "metallica enter sandman", "metallica enter sandman"),  # unknown -> known
    ("metalica enter sandman", "metalicca enter sandman", "metalica enter sandman"),  # unknown -> unknown: kept
    ("workut hits 2024", "workout hits he", "workout hits 2024"),  # numbers never change, fixes elsewhere stay
    ("frank sinatr fly me to the moon", "frank sinater fly meothe tomon", "frank sinatr fly me to the moon"),
    ("the weeknd", "the weekend", "the weeknd"),  # 2.7 -> 5.1 passes the gain... see min_gain test below
])
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


def test_detokenizer_adapter_guards_each_request_and_isolates_bad_ones(tmp_path, mocked_pb_utils, spell_serving_dir):
    adapter = mocked_pb_utils.load_adapter("spell_detokenizer")
    from search_backends.spell_codec import SpellTextCodec

    codec = SpellTextCodec(spell_serving_dir)
    model_dir = tmp_path / "1" / "spell_model"
    model_dir.parent.mkdir(parents=True)
    import shutil

    shutil.copytree(spell_serving_dir, model_dir)
    write_lexicon(model_dir / "lexicon.tsv", LEXICON)
    config = {"output": [{"name": "CORRECTED", "data_type": "TYPE_STRING"}],
              "parameters": {"model_dir": {"string_value": "spell_model"}}}
    model = adapter.TritonPythonModel()
    model.initialize({"model_config": json.dumps(config), "model_repository": str(tmp_path), "model_version": "1"})

    def request(model_text, source, guard=None, params=None):
        ids, _ = codec.encode([model_text])
        inputs = {"output_ids": ids, "TAIL": np.array([[b""]], dtype=object),
                  "SOURCE": np.array([[source.encode()]], dtype=object)}
        if guard is not None:
            inputs["GUARD"] = np.array([[guard]])
        return mocked_pb_utils.Request(inputs, params or {})

    responses = model.execute([request("taylor swit", "taylor swift"), request("taylor swit", "taylor swift", guard=False),
                               request("taylor swift", "taylor swit"), request("x", "x", params={"guard": "perhaps"}),
                               request("taylor swit", "taylor swift", params={"guard": False})])
    texts = [None if r.error else r.outputs["CORRECTED"][0][0].decode() for r in responses]
    assert texts[:3] == ["taylor swift", "taylor swit", "taylor swift"]
    assert texts[4] == "taylor swit"
    assert responses[3].error is not None and "guard" in responses[3].error.message
    assert responses[3].error.code == mocked_pb_utils.TritonError.INVALID_ARG


# --------------------------------------------------------------------------- the lexicon repair


REPAIR_LEXICON = {**LEXICON, "metallic": 3.8, "relish": 3.3, "eilish": 2.3, "billie": 3.5, "bad": 6.0, "guy": 5.4,
                  "elisha": 3.0, "zeppelin": 3.3, "led": 4.8, "bossa": 2.6, "nova": 4.0, "bosa": 1.9}


@pytest.fixture(scope="module")
def repairing_guard():
    from search_backends.spell_guard import LexiconRepair

    repair = LexiconRepair(REPAIR_LEXICON, bigrams={("billie", "eilish"), ("bossa", "nova")}, distance_penalty=1.0,
                           context_bonus=2.0, repair_below_zipf=2.0)
    return SpellGuard(REPAIR_LEXICON, 1.0, repair)


def test_repair_replaces_words_the_lexicon_does_not_know(repairing_guard):
    # the model left the typo: the closest frequent word wins, per edit penalised
    assert repairing_guard.apply("metalica enter sandman", "metalica enter sandman") == "metallica enter sandman"
    # the model wrote a non-word the guard refused: candidates near either spelling
    assert repairing_guard.apply("led zepelin", "led zeppelyn") == "led zeppelin"
    # context: "relish" is more frequent, but "billie eilish" is a known phrase
    assert repairing_guard.apply("billie elish bad guy", "billie elish bad guy") == "billie eilish bad guy"
    assert repairing_guard.apply("elish", "elish") == "relish"  # without the neighbour, frequency decides


def test_repair_leaves_known_words_numbers_and_short_words(repairing_guard):
    assert repairing_guard.apply("taylor swift", "taylor swift") == "taylor swift"
    assert repairing_guard.apply("workut hits 2024", "workut hits 2024") == "workout hits 2024"
    assert repairing_guard.apply("u2 hits", "u2 hits") == "u2 hits"
    assert repairing_guard.apply("bosa nova", "bosa nova") == "bossa nova"  # a rare known word competes as itself
    assert repairing_guard.apply("xq", "xq") == "xq"  # too short to repair


def test_shipped_checkpoint_has_guard_files(spell_serving_dir):
    from search_backends.contracts.spell_correct import BIGRAMS_FILE, LEXICON_FILE

    lexicon = read_lexicon(spell_serving_dir / LEXICON_FILE)
    assert len(lexicon) > 250_000 and {"metallica", "eilish", "weeknd", "beyonce"} <= set(lexicon)
    assert (spell_serving_dir / BIGRAMS_FILE).stat().st_size > 1_000_000
