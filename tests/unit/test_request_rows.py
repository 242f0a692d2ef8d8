"""The row bookkeeping of the adapters (search_backends.request_rows): fast, no server."""

from __future__ import annotations

import numpy as np

from search_backends.request_rows import concat_rows, flatten_rows, pack_spans


def test_concat_rows_remembers_each_request():
    pooled, ranges = concat_rows([np.ones((2, 3)), np.zeros((1, 3)), np.full((3, 3), 2.0)])
    assert pooled.shape == (6, 3) and ranges == [(0, 2), (2, 3), (3, 6)]
    assert (pooled[ranges[2][0] : ranges[2][1]] == 2.0).all()


def test_pack_spans_leaves_no_gap_for_dropped_requests():
    texts = ["a", "b", "c", "d", "e", "f"]
    packed, ranges = pack_spans(texts, [(0, 2), (3, 4), (4, 6)])  # rows 2 belonged to a refused request
    assert packed == ["a", "b", "d", "e", "f"] and ranges == [(0, 2), (2, 3), (3, 5)]
    assert [packed[a:b] for a, b in ranges] == [texts[0:2], texts[3:4], texts[4:6]]
    assert pack_spans(texts, []) == ([], [])


def test_flatten_rows_remembers_each_request_and_keeps_empty_ones():
    flat, ranges = flatten_rows([["a", "b"], [], ["c"]])
    assert flat == ["a", "b", "c"] and ranges == [(0, 2), (2, 2), (2, 3)]
    assert [flat[a:b] for a, b in ranges] == [["a", "b"], [], ["c"]]
