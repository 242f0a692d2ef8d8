"""`searchbar eval-spell`: the metrics, the SymSpell baseline and the command on a small file."""

from __future__ import annotations


import pytest

from search_tools.spell_eval import SymSpellBaseline, read_pairs, score


def test_scores_count_fixed_unchanged_and_damaged():
    pairs = [("tayler swift", "taylor swift"), ("metalica", "metallica"), ("jazz", "jazz"), ("drake", "drake")]
    outputs = ["taylor swift", "metalicca", "jazz", "drakes"]
    s = score("x", pairs, outputs, seconds=2.0)
    assert (s.exact_match, s.misspelled_fixed, s.correct_unchanged, s.changed_into_wrong) == (0.5, 0.5, 0.5, 0.5)
    assert s.queries_per_s == 2.0 and s.pairs == 4
    assert score("x", pairs, [q for q, _ in pairs], 1.0).correct_unchanged == 1.0  # the identity keeps all


def test_read_pairs_normalises_and_rejects_bad_lines(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("# comment\nTayler  Swift\ttaylor swift\n\njazz\tjazz\n", encoding="utf-8")
    assert read_pairs(path) == [("tayler swift", "taylor swift"), ("jazz", "jazz")]
    path.write_text("no tab here\n", encoding="utf-8")
    with pytest.raises(ValueError, match="pairs.tsv:1"):
        read_pairs(path)


def test_symspell_baseline_is_the_real_library():
    baseline = SymSpellBaseline()
    out = baseline.correct(["whereis th elove", "", "hits 2024"])
    assert out[0] == "where is the love" and out[1] == "" and "2024" in out[2]
