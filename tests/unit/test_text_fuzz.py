"""Bad input to every registered pipeline, against a real tritonserver.

Each bad request gets a clear Triton error naming the problem (INVALID_ARGUMENT for the request's
own fault, NOT_FOUND for an unknown model); good requests sharing a dynamic batch with bad ones are
answered exactly as when sent alone; the server stays live and ready throughout.
"""

from __future__ import annotations


import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search_backends.text_input import InputError, decode_text


# How a pipeline answers an empty / whitespace-only text (documented in its module); others may do either.
@pytest.fixture(scope="module")
def embedding_tokenizer_dir():
    from search_build.export.sentence_checkpoint import SentenceCheckpoint, default_embedding_checkpoint

    return SentenceCheckpoint.load(default_embedding_checkpoint()).transformer_dir


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_decode_text_never_crashes(value):
    try:
        text = decode_text(value)
    except InputError as exc:
        assert str(exc).startswith("TEXT: ")
    else:
        assert isinstance(text, str) and text.strip() and "\x00" not in text


@settings(max_examples=200, deadline=3000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.text(max_size=400), min_size=1, max_size=6))
def test_batch_tokenizer_on_arbitrary_unicode(embedding_tokenizer_dir, texts):
    from search_backends.tokenization import BatchTokenizer

    tok = _cached(BatchTokenizer, embedding_tokenizer_dir, max_length=32, pad_to_multiple_of=8)
    clean = []
    for t in texts:
        try:
            clean.append(decode_text(t))
        except InputError:
            continue
    if not clean:
        return
    batch = tok.encode(clean)
    vocab = tok.tokenizer.get_vocab_size()
    assert batch.input_ids.shape == batch.attention_mask.shape == (len(clean), batch.input_ids.shape[1])
    assert batch.input_ids.shape[1] % 8 == 0 and batch.input_ids.shape[1] <= 32
    assert ((batch.input_ids >= 0) & (batch.input_ids < vocab)).all()
    lengths = batch.attention_mask.sum(axis=1)
    assert (lengths >= 2).all() and (lengths <= 32).all()  # [CLS] ... [SEP] at least, never beyond max_length
    for row, n in enumerate(lengths):
        assert (batch.attention_mask[row, :n] == 1).all() and (batch.attention_mask[row, n:] == 0).all()


@settings(max_examples=150, deadline=3000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=st.lists(st.one_of(st.none(), st.text(max_size=300)), min_size=6, max_size=6))
def test_pair_encoder_on_arbitrary_unicode(embedding_tokenizer_dir, fields):
    from search_backends.pair_encoding import PairEncoder

    enc = _cached(PairEncoder.from_dir, embedding_tokenizer_dir, max_length=64)
    batch = enc.encode(*[[f] for f in fields])
    n = int(batch.attention_mask.sum())
    assert 3 <= n <= 64 and batch.input_ids.shape[1] % 8 == 0
    assert batch.input_ids[0, 0] == enc.cls_id and batch.input_ids[0, n - 1] == enc.sep_id


class _FakeSeq2Seq:
    """A deterministic toy encoder-decoder for the decoding loop: logits depend on the last token and the input."""

    vocab, heads, dim = 11, 2, 4

    def encode(self, ids, mask):
        x = (ids * mask).sum(axis=1).astype(np.float32)
        return [np.broadcast_to(x[:, None, None, None], (len(ids), self.heads, ids.shape[1], self.dim)).copy()]

    def decode_step(self, tokens, mask, past, cross):
        base = cross[0][:, 0, 0, 0][:, None]
        logits = np.sin(base * 0.37 + tokens * 1.3 + np.arange(self.vocab)[None, :] * 0.91).astype(np.float32)
        present = [
            np.concatenate([p, np.zeros((len(tokens), self.heads, 1, self.dim), np.float32)], axis=2) for p in past
        ]
        return logits, present


@settings(max_examples=150, deadline=5000)
@given(
    ids=st.lists(st.lists(st.integers(0, 10), min_size=1, max_size=12), min_size=1, max_size=4),
    num_beams=st.integers(-2, 6),
    max_new_tokens=st.integers(-1, 12),
    no_repeat=st.integers(0, 3),
    length_penalty=st.floats(-2, 2, allow_nan=False),
)
def test_spell_generate_loop_never_crashes(ids, num_beams, max_new_tokens, no_repeat, length_penalty):
    gen = pytest.importorskip("search_backends.spell_generation", reason="spell generation module not added yet")
    defaults = gen.GenerationDefaults({"decoder_start_token_id": 2, "eos_token_id": 3, "pad_token_id": 1}, 64)
    try:
        params = defaults.resolve(
            num_beams=num_beams,
            max_new_tokens=max_new_tokens,
            no_repeat_ngram_size=no_repeat,
            length_penalty=length_penalty,
        )
    except ValueError as exc:  # the clean refusal the adapter turns into INVALID_ARGUMENT
        assert num_beams < 1 or max_new_tokens < 1, exc
        return
    width = max(map(len, ids))
    input_ids = np.array([row + [1] * (width - len(row)) for row in ids], dtype=np.int64)
    mask = np.array([[1] * len(row) + [0] * (width - len(row)) for row in ids], dtype=np.int64)
    model = _FakeSeq2Seq()
    out = gen.generate(model.encode, model.decode_step, input_ids, mask, [params] * len(ids))
    assert len(out) == len(ids)
    for tokens in out:
        assert tokens[0] == 2 and 2 <= len(tokens) <= max_new_tokens + 1
        assert all(0 <= t < model.vocab for t in tokens)
        assert 3 not in tokens[1:-1], "nothing follows EOS"


_CACHE: dict = {}


def _cached(factory, *args, **kwargs):
    key = (factory, args, tuple(sorted(kwargs.items())))
    if key not in _CACHE:
        _CACHE[key] = factory(*args, **kwargs)
    return _CACHE[key]
