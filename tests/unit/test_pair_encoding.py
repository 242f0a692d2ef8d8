"""Pair validation of product_duplicate (search_backends.pair_encoding.pair_columns) and the pair_tokenizer adapter
over it: fast, no server, no export (the packaged MiniLM tokenizer)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from search_backends.contracts import product_search as P
from search_backends.contracts import query_embedding as Q
from search_backends.pair_encoding import PairEncoder, pair_columns
from search_backends.text_input import InputError
from search_build.export.sentence_checkpoint import default_embedding_checkpoint


def _bytes(*values: str) -> np.ndarray:
    return np.array([[v.encode()] for v in values], dtype=np.object_)


def _fields(given: dict | None = None, **by_keyword) -> list:
    given = {**(given or {}), **by_keyword}
    return [given.get(name) for name in P.PAIR_FIELDS]


def test_missing_fields_are_empty_columns_and_text_is_stripped():
    columns = pair_columns(
        _fields(
            A_TITLE=_bytes(" usb cable ", "tee"), B_TYPE=_bytes("cables", ""), B_TITLE=_bytes("usb-c cable", "t-shirt")
        )
    )
    assert columns == [["", ""], ["usb cable", "tee"], ["", ""], ["cables", ""], ["usb-c cable", "t-shirt"], ["", ""]]


@pytest.mark.parametrize(
    "given, message",
    [
        ({}, f"all of {P.A_TYPE}"),
        ({P.A_TITLE: _bytes("a", "b"), P.B_TITLE: _bytes("c")}, f"{P.B_TITLE}: 1 rows, other fields have 2"),
        ({P.A_TITLE: _bytes("a"), P.B_TYPE: _bytes(" ")}, "row 0: product B has no text"),
        ({P.A_DESCRIPTION: _bytes("x", ""), P.B_TITLE: _bytes("c", "d")}, "row 1: product A has no text"),
        ({P.A_TITLE: np.array([[b"\xff"]], dtype=np.object_), P.B_TITLE: _bytes("c")}, f"{P.A_TITLE}: invalid UTF-8"),
    ],
)
def test_invalid_pairs_name_the_problem(given, message):
    with pytest.raises(InputError, match=message):
        pair_columns(_fields(given))


def test_six_inputs_are_required():
    with pytest.raises(ValueError, match="expected 6 field inputs"):
        pair_columns([None] * 5)


@pytest.fixture(scope="module")
def encoder() -> PairEncoder:
    return PairEncoder.from_dir(default_embedding_checkpoint(), max_length=64)


def test_request_rows_are_as_wide_as_the_request_alone(encoder):
    columns = pair_columns(
        _fields(A_TITLE=_bytes("usb cable", "a much longer product title " * 4), B_TITLE=_bytes("cable", "short"))
    )
    batch = encoder.encode(*columns)
    for start, stop in ((0, 1), (1, 2), (0, 2)):
        alone = encoder.encode(*[c[start:stop] for c in columns])
        rows = batch.request_rows(start, stop, encoder.pad_to_multiple_of)
        for name in P.IDS:
            np.testing.assert_array_equal(getattr(rows, name), getattr(alone, name))


def test_pair_tokenizer_adapter_answers_each_request_alone(tmp_path, mocked_pb_utils):
    """A bad request of a batch fails alone (INVALID_ARG, naming the field); the others get their own rows."""
    config = {
        "input": [{"name": n, "data_type": "TYPE_STRING", "dims": [1]} for n in P.PAIR_FIELDS],
        "output": [{"name": n, "data_type": "TYPE_INT64", "dims": [-1]} for n in P.IDS],
        "parameters": {
            Q.TOKENIZER_DIR_PARAMETER: {"string_value": str(default_embedding_checkpoint())},
            Q.MAX_LENGTH_PARAMETER: {"string_value": "64"},
        },
    }
    model = mocked_pb_utils.load_adapter("pair_tokenizer").TritonPythonModel()
    model.initialize({"model_config": json.dumps(config), "model_repository": str(tmp_path), "model_version": "1"})
    good = [
        {P.A_TITLE: _bytes("usb cable"), P.B_TITLE: _bytes("usb-c cable 2 m")},
        {P.A_TYPE: _bytes("tee", "mug"), P.A_TITLE: _bytes("cotton tee", "mug"), P.B_TITLE: _bytes("tee", "cup")},
    ]
    bad = {P.A_TITLE: _bytes("usb cable")}
    responses = model.execute(
        [mocked_pb_utils.Request(good[0]), mocked_pb_utils.Request(bad), mocked_pb_utils.Request(good[1])]
    )
    assert responses[1].error.code == mocked_pb_utils.TritonError.INVALID_ARG
    assert "product B has no text" in responses[1].error.message
    encoder = PairEncoder.from_dir(default_embedding_checkpoint(), max_length=64)
    for response, inputs in zip((responses[0], responses[2]), good):
        assert response.error is None
        want = encoder.encode(*pair_columns([inputs.get(n) for n in P.PAIR_FIELDS]))
        for name in P.IDS:
            np.testing.assert_array_equal(response.outputs[name], getattr(want, name))
