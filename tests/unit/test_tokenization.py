"""Batch tokenization: the pre-clip before tokenizing keeps exactly what truncation would keep."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer

from search_backends.tokenization import CHARS_PER_TOKEN_LIMIT, BatchTokenizer
from search_build.export.sentence_checkpoint import default_embedding_checkpoint


@pytest.fixture(scope="module")
def checkpoint():
    return default_embedding_checkpoint()


def test_long_text_is_clipped_before_tokenizing_and_keeps_the_same_tokens(checkpoint):
    tokenizer = BatchTokenizer(checkpoint, max_length=32, pad_to_multiple_of=8)
    reference = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    reference.no_padding()
    reference.enable_truncation(32)
    long_texts = [
        "metallica enter sandman live " * 3000,  # 90 KB of words
        "x" * 5 + " supercalifragilistic" * 4000,
        "short query",
    ]
    batch = tokenizer.encode(long_texts)
    for row, text in enumerate(long_texts):
        expected = reference.encode(text).ids  # the whole text, truncated by the tokenizer itself
        n = int(batch.attention_mask[row].sum())
        assert batch.input_ids[row, :n].tolist() == expected
    assert 32 * CHARS_PER_TOKEN_LIMIT < len(long_texts[0])  # the clip did happen on the long rows


def test_text_tokenizer_adapter_answers_each_request_as_tokenized_alone(checkpoint, tmp_path, mocked_pb_utils):
    """One tokenizer call for the batch; each request's rows as wide as they would be alone."""
    import json

    import numpy as np

    from search_backends.contracts.query_embedding import (
        MAX_LENGTH_PARAMETER,
        TEXT,
        TOKEN_IDS,
        TOKENIZER_DIR_PARAMETER,
    )

    config = {
        "input": [{"name": TEXT, "data_type": "TYPE_STRING", "dims": [1]}],
        "output": [{"name": n, "data_type": "TYPE_INT64", "dims": [-1]} for n in TOKEN_IDS],
        "parameters": {
            TOKENIZER_DIR_PARAMETER: {"string_value": str(checkpoint)},
            MAX_LENGTH_PARAMETER: {"string_value": "64"},
        },
    }
    model = mocked_pb_utils.load_adapter("text_tokenizer").TritonPythonModel()
    model.initialize({"model_config": json.dumps(config), "model_repository": str(tmp_path), "model_version": "1"})
    requests = [["jazz", "a much longer query about late night piano jazz " * 3], ["lofi"]]
    responses = model.execute(
        [
            mocked_pb_utils.Request({TEXT: np.array([[t.encode()] for t in texts], dtype=np.object_)})
            for texts in requests
        ]
    )
    tokenizer = BatchTokenizer(checkpoint, max_length=64, pad_to_multiple_of=8)
    for response, texts in zip(responses, requests):
        assert response.error is None
        alone = tokenizer.encode(texts)
        for name in TOKEN_IDS:
            np.testing.assert_array_equal(response.outputs[name], getattr(alone, name))
