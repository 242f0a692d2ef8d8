"""The lexicon repair's learnt word reranker: edit alignment, error model, scoring, the guard wired to it.

Pure logic, no server: the served path runs the same `SpellGuard` (tests/test_spell_correct.py) and the
shipped reranker's quality is checked on the held-out files (tests/test_spell_model.py).
"""

from __future__ import annotations


import pytest

from search_backends.contracts.spell_correct import RERANKER_FILE
from search_backends.spell_rerank import (
    FEATURES,
    Candidate,
    ErrorModel,
    WordReranker,
    candidate_features,
    edit_kinds,
    edit_ops,
)


@pytest.mark.parametrize(
    "typed, intended, ops, kinds",
    [
        ("ristrict", "restrict", [("sub", "e", "i", False)], {"sub_vowel": 1}),
        ("burj", "burn", [("sub", "n", "j", True)], {"sub_keyboard": 1}),
        ("teh", "the", [("trans", "h", "e", True)], {"transpose": 1}),
        ("reciver", "receiver", [("del", "c", "e", False)], {"del_vowel": 1}),
        ("satelite", "satellite", [("del", "e", "l", False)], {"del_double": 1}),
        ("helllo", "hello", [("ins", "e", "l", False)], {"ins_double": 1}),
        ("xhello", "hello", [("ins", "^", "x", False)], {"ins_other": 1}),
        ("volcanoe", "volcano", [("ins", "o", "e", True)], {"ins_vowel": 1}),
        ("abba", "abba", [], {}),
    ],
)
def test_edit_ops_name_each_edit_with_its_context(typed, intended, ops, kinds):
    assert edit_ops(typed, intended) == ops
    assert dict(edit_kinds(typed, intended)) == kinds


def test_error_model_prefers_the_edits_people_make():
    errors = ErrorModel.fit(
        [
            ("recieve", "receive"),
            ("beleive", "believe"),
            ("acheive", "achieve"),
            ("tommorow", "tomorrow"),
            ("wierd", "weird"),
        ]
    )
    common = errors.log_prob(edit_ops("concieve", "conceive"))  # the ie/ei swap, seen three times
    rare = errors.log_prob(edit_ops("conceive", "conqeive"))  # a substitution never seen
    assert common > rare
    assert errors.log_prob([]) == 0.0
    # serialisable through the reranker file
    reranker = WordReranker(dict.fromkeys(FEATURES, 0.1), errors=errors)
    assert reranker.errors.edits == errors.edits


def test_features_of_keep_and_of_a_change():
    lexicon = {"restrict": 3.8, "district": 5.0}
    keep = dict(zip(FEATURES, candidate_features("ristrict", Candidate("ristrict", 0), lexicon, False)))
    assert keep["keep"] == 1.0 and keep["keep_unknown"] == 1.0 and keep["zipf"] == 0.0
    change = dict(
        zip(FEATURES, candidate_features("ristrict", Candidate("district", 1), lexicon, True, model_word="district"))
    )
    assert change["keep"] == 0.0 and change["zipf"] == 5.0 and change["distance_1"] == 1.0
    assert change["first_letter"] == 1.0 and change["context"] == 1.0 and change["from_model"] == 1.0
    assert change["sub_keyboard"] == 1.0  # r and d are neighbours


def test_reranker_choice_follows_its_weights_and_keep_margin(tmp_path):
    lexicon = {"restrict": 3.8, "district": 5.0, "rare": 1.2}
    candidates = [Candidate("ristrict", 0), Candidate("restrict", 1), Candidate("district", 1)]
    no_context = lambda word: False  # noqa: E731
    by_frequency = WordReranker({"zipf": 1.0, "keep_unknown": -5.0})
    assert by_frequency.choose("ristrict", candidates, lexicon, no_context) == "district"
    by_edit = WordReranker({"zipf": 1.0, "first_letter": -2.0, "keep_unknown": -5.0})
    assert by_edit.choose("ristrict", candidates, lexicon, no_context) == "restrict"
    by_edit.keep_margin = 10.0  # a large margin keeps what was typed
    assert by_edit.choose("ristrict", candidates, lexicon, no_context) == "ristrict"
    by_edit.save(tmp_path / RERANKER_FILE)
    loaded = WordReranker.load(tmp_path / RERANKER_FILE)
    assert loaded.weights == by_edit.weights and loaded.keep_margin == 10.0
    with pytest.raises(ValueError, match="unknown features"):
        WordReranker({"not_a_feature": 1.0})


def test_near_words_equals_symspell_lookup():
    """The repair's fast candidate lookup reads symspellpy's index directly: same set as its own lookup."""
    from symspellpy import Verbosity

    from search_backends.spell_guard import lexicon_index, near_words

    words = {
        f"{a}{b}" for a in ("metal", "sand", "swift", "jaz", "k", "bohemian", "rhap") for b in ("", "ica", "s", "l")
    }
    lexicon = {w: 3.0 for w in words} | {"metallica": 4.0, "jazz": 4.5, "kill": 5.0, "bohemian": 3.5}
    index = lexicon_index(lexicon, 1.0, 2)
    for query in ("metalica", "jaz", "kil", "bohemain", "rhapsody", "xx", "swfit", "sandmanx", "k"):
        expected = {hit.term: hit.distance for hit in index.lookup(query, Verbosity.ALL, 2)}
        assert near_words(index, query, 2) == expected, query


@pytest.mark.parametrize("limit", [1, 5, 24])
def test_limited_candidates_equal_the_full_ranking(limit):
    """The repair keeps the `limit` best near words without measuring all of them (long delete lists walked by
    falling frequency): the same words, distances and order as ranking every near word, ties included."""
    import random

    from search_backends.spell_guard import LexiconRepair

    rng = random.Random(7)
    words = {"".join(rng.choice("abcdekl") for _ in range(rng.randint(2, 6))) for _ in range(6000)}
    lexicon = {w: rng.choice([1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.5]) for w in words}  # coarse: many ties
    repair = LexiconRepair(lexicon)
    queries = ["kil", "abc", "dekla", "lll", "xyz", "abcdekl", "ka", "bad"] + rng.sample(sorted(words), 40)
    walked = 0
    for typed in queries:
        walked += any(d in repair.ranked for d in repair.index._edits_prefix(typed))
        for others in ((), ("kale",), (typed[::-1], "ab")):
            want = repair.candidates(typed, others)[: limit + 1]  # no limit: every near word ranked
            assert repair.candidates(typed, others, limit) == want, (typed, others)
    assert walked >= 10, "the long, ranked delete lists were not exercised"
