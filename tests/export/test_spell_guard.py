"""The spell_detokenize adapter with the guard (pb_utils mocked), the lexicon repair, and the shipped guard files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from search_backends.spell_guard import SpellGuard, read_lexicon, write_lexicon
from support.spell_lexicon import LEXICON


def test_detokenizer_adapter_guards_each_request_and_isolates_bad_ones(tmp_path, mocked_pb_utils, spell_serving_dir):
    adapter = mocked_pb_utils.load_adapter("spell_detokenizer")
    from search_backends.spell_codec import SpellTextCodec

    codec = SpellTextCodec(spell_serving_dir)
    model_dir = tmp_path / "1" / "spell_model"
    model_dir.parent.mkdir(parents=True)
    import shutil

    shutil.copytree(spell_serving_dir, model_dir)
    write_lexicon(model_dir / "lexicon.tsv", LEXICON)
    config = {
        "output": [{"name": "CORRECTED", "data_type": "TYPE_STRING"}],
        "parameters": {"model_dir": {"string_value": "spell_model"}},
    }
    model = adapter.TritonPythonModel()
    model.initialize({"model_config": json.dumps(config), "model_repository": str(tmp_path), "model_version": "1"})

    def request(model_text, source, guard=None, params=None):
        ids, _ = codec.encode([model_text])
        inputs = {
            "output_ids": ids,
            "TAIL": np.array([[b""]], dtype=object),
            "SOURCE": np.array([[source.encode()]], dtype=object),
        }
        if guard is not None:
            inputs["GUARD"] = np.array([[guard]])
        return mocked_pb_utils.Request(inputs, params or {})

    responses = model.execute(
        [
            request("taylor swit", "taylor swift"),
            request("taylor swit", "taylor swift", guard=False),
            request("taylor swift", "taylor swit"),
            request("x", "x", params={"guard": "perhaps"}),
            request("taylor swit", "taylor swift", params={"guard": False}),
        ]
    )
    texts = [None if r.error else r.outputs["CORRECTED"][0][0].decode() for r in responses]
    assert texts[:3] == ["taylor swift", "taylor swit", "taylor swift"]
    assert texts[4] == "taylor swit"
    assert responses[3].error is not None and "guard" in responses[3].error.message
    assert responses[3].error.code == mocked_pb_utils.TritonError.INVALID_ARG


# --------------------------------------------------------------------------- the lexicon repair


REPAIR_LEXICON = {
    **LEXICON,
    "metallic": 3.8,
    "relish": 3.3,
    "eilish": 2.3,
    "billie": 3.5,
    "bad": 6.0,
    "guy": 5.4,
    "elisha": 3.0,
    "zeppelin": 3.3,
    "led": 4.8,
    "bossa": 2.6,
    "nova": 4.0,
    "bosa": 1.9,
}


@pytest.fixture(scope="module")
def repairing_guard():
    from search_backends.spell_guard import LexiconRepair

    repair = LexiconRepair(
        REPAIR_LEXICON,
        bigrams={("billie", "eilish"), ("bossa", "nova")},
        distance_penalty=1.0,
        context_bonus=2.0,
        repair_below_zipf=2.0,
    )
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
