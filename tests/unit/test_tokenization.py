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
