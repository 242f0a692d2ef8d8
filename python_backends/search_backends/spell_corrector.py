"""In-process spell correction: text in, corrected text out, over the two ONNX graphs of search_build.export.spell_export.

Input rules (documented behaviour, relied on by the Triton adapter and the tests):
- Text is normalised first: lower-cased (`lowercase=True`, the trained model only knows lowercase) and runs of
  whitespace collapsed to one space, ends stripped.
- Empty or whitespace-only text returns "" without touching the model (nothing to correct; one empty query in a
  batch must not fail the others).
- Text longer than the model's input limit (min of max_position_embeddings and the tokenizer's
  model_max_length, special tokens included) is split at a word boundary: the longest run of leading whole words
  that fits is corrected and the remaining words are appended unchanged. A single word that alone is too long
  is cut to fit at a character boundary, and its rest is appended unchanged as well.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .onnx_runner import make_session
from .spell_codec import SpellTextCodec, normalize_query  # noqa: F401 - re-exported
from .spell_generation import GenerationDefaults, generate
from .spell_guard import SpellGuard

from .contracts.spell_correct import (
    ATTENTION_MASK,
    DECODER_FILE,
    DECODER_INPUT_IDS,
    ENCODER_ATTENTION_MASK,
    ENCODER_FILE,
    INPUT_IDS,
    LOGITS,
    GraphNames,
)


class OnnxSpellModel:
    """The encode / decode_step callables of `spell_generation.generate` over ONNX Runtime sessions."""

    def __init__(self, model_dir: str | Path, intra_op_threads: int = 0, providers: Sequence[str] | None = None):
        model_dir = Path(model_dir)
        self.encoder = make_session(model_dir / ENCODER_FILE, intra_op_threads=intra_op_threads, providers=providers)
        self.decoder = make_session(model_dir / DECODER_FILE, intra_op_threads=intra_op_threads, providers=providers)
        # The encoder's outputs: the hidden states, then a key and a value per decoder layer.
        names = GraphNames((len(self.encoder.get_outputs()) - 1) // 2)
        self.cross_names, self.past_names, self.present_names = names.cross(), names.past(), names.present()

    def encode(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> list[np.ndarray]:
        return self.encoder.run(self.cross_names, {INPUT_IDS: input_ids, ATTENTION_MASK: attention_mask})

    def decode_step(self, decoder_input_ids, encoder_attention_mask, past, cross):
        feed = {DECODER_INPUT_IDS: decoder_input_ids, ENCODER_ATTENTION_MASK: encoder_attention_mask}
        feed.update(zip(self.past_names, past))
        feed.update(zip(self.cross_names, cross))
        logits, *present = self.decoder.run([LOGITS, *self.present_names], feed)
        return logits, present


def correct_batch(
    codec: SpellTextCodec,
    decode,
    guard: SpellGuard | None,
    texts: Sequence[str],
    row_params: Sequence,
    use_guard: Sequence[bool],
) -> list[str]:
    """Texts -> corrected texts in one tokenizer call, one ``decode(ids, mask, row_params)`` call and one
    detokenizer call, with per-row decoding settings and guard switches.

    Shared by SpellCorrector and the local target's one-stub spell stage, so both apply the codec's rules the
    same way as the tokenize -> generate -> detokenize ensemble. Rows whose normalised text is empty skip the
    model and come back "".
    """
    prepared = codec.prepare(texts)
    live = [i for i, (head, _) in enumerate(prepared) if head]
    tokens: list[list[int]] = [[] for _ in texts]
    if live:
        ids, mask = codec.encode([prepared[i][0] for i in live])
        for i, row in zip(live, decode(ids, mask, [row_params[i] for i in live])):
            tokens[i] = row
    heads = codec.decode_heads(tokens)
    if guard is not None:
        heads = guard.apply_where([head for head, _ in prepared], heads, use_guard)
    return codec.join_tails(heads, [tail for _, tail in prepared])


class SpellCorrector:
    """Batch spell correction. Per-call generation overrides (num_beams, max_new_tokens, ...) follow HF semantics."""

    def __init__(
        self,
        model_dir: str | Path,
        intra_op_threads: int = 0,
        providers: Sequence[str] | None = None,
        lowercase: bool = True,
        max_batch: int = 64,
    ):
        model_dir = Path(model_dir)
        self.model = OnnxSpellModel(model_dir, intra_op_threads=intra_op_threads, providers=providers)
        self.codec = SpellTextCodec(model_dir, lowercase=lowercase)
        self.defaults = GenerationDefaults.from_model_dir(model_dir)
        self.guard = SpellGuard.from_model_dir(model_dir)  # None for a checkpoint without lexicon.tsv
        self.max_batch = max_batch

    @property
    def max_input_tokens(self) -> int:
        return self.codec.max_input_tokens

    def correct(self, texts: Sequence[str], guard: bool = True, **generation_overrides) -> list[str]:
        """Corrected texts; `guard=False` returns the raw model output (equal to HF generate)."""
        params = self.defaults.resolve(**generation_overrides)
        decode = lambda ids, mask, rows: generate(self.model.encode, self.model.decode_step, ids, mask, rows)  # noqa: E731
        out: list[str] = []
        for start in range(0, len(texts), self.max_batch):
            chunk = list(texts[start : start + self.max_batch])
            out += correct_batch(self.codec, decode, self.guard, chunk, [params] * len(chunk), [guard] * len(chunk))
        return out

    def split_to_fit(self, query: str) -> tuple[str, str]:
        return self.codec.split_to_fit(query)
