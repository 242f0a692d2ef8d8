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

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from .onnx_runner import make_session
from .request_rows import flatten_rows
from .spell_codec import SpellTextCodec, normalize_query  # noqa: F401 - re-exported
from .spell_decoding import ServedDecoding
from .spell_generation import GenerationDefaults, generate
from .spell_generation.inflight import InflightDecoder
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


@dataclass
class PreparedTexts:
    """Texts ready to decode: each row's (head the model sees, tail appended unchanged), which rows have a head
    to decode, and those rows' token ids and mask."""

    pieces: list[tuple[str, str]]
    live: list[int]
    ids: np.ndarray
    mask: np.ndarray

    def select(self, start: int, stop: int) -> "PreparedTexts":
        """The rows ``start:stop`` (one request's texts) on their own."""
        picked = [k for k, i in enumerate(self.live) if start <= i < stop]
        return PreparedTexts(
            self.pieces[start:stop], [self.live[k] - start for k in picked], self.ids[picked], self.mask[picked]
        )


def prepare_texts(codec: SpellTextCodec, texts: Sequence[str]) -> PreparedTexts:
    """One tokenizer call for every text; rows whose normalised text is empty skip the model."""
    pieces = codec.prepare(texts)
    live = [i for i, (head, _) in enumerate(pieces) if head]
    if live:
        ids, mask = codec.encode([pieces[i][0] for i in live])
    else:
        ids = mask = np.zeros((0, 0), dtype=np.int64)
    return PreparedTexts(pieces, live, ids, mask)


def finish_texts(
    codec: SpellTextCodec,
    guard: SpellGuard | None,
    prepared: PreparedTexts,
    live_tokens: Sequence[Sequence[int]],
    use_guard: Sequence[bool],
) -> list[str]:
    """Decoded token rows of the live rows -> texts: one detokenizer call, the guard where switched on, tails."""
    tokens: list[Sequence[int]] = [[] for _ in prepared.pieces]
    for i, row in zip(prepared.live, live_tokens):
        tokens[i] = row
    heads = codec.decode_heads(tokens)
    if guard is not None:
        heads = guard.apply_where([head for head, _ in prepared.pieces], heads, use_guard)
    return codec.join_tails(heads, [tail for _, tail in prepared.pieces])


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
    prepared = prepare_texts(codec, texts)
    tokens = decode(prepared.ids, prepared.mask, [row_params[i] for i in prepared.live]) if prepared.live else []
    return finish_texts(codec, guard, prepared, tokens, use_guard)


@dataclass
class SpellStage:
    """A served spell stage that corrects text itself (engine in-process): the decoding engine, the text codec and
    the guard, from its model folder and config parameters. The one-stub spell stage and the in-process search bar
    both run it."""

    decoding: ServedDecoding
    codec: SpellTextCodec
    guard: SpellGuard | None

    @classmethod
    def from_parameters(cls, model_dir: str | Path, params: Mapping[str, str], *, threads: int = 0) -> "SpellStage":
        return cls(
            ServedDecoding.from_parameters(model_dir, params, threads=threads),
            SpellTextCodec(model_dir),
            SpellGuard.from_model_dir(model_dir),
        )

    def correct(self, payloads: Sequence[tuple[Sequence[str], Sequence, Sequence[bool]]]) -> list[list[str]]:
        """One tokenizer, decoder and detokenizer call for the requests' ``(texts, row params, guard switches)``;
        each request's corrected texts."""
        rows, ranges = flatten_rows([texts for texts, _, _ in payloads])
        if not rows:
            return [[] for _ in payloads]
        row_params, _ = flatten_rows([params for _, params, _ in payloads])
        switches, _ = flatten_rows([switch for _, _, switch in payloads])
        corrected = correct_batch(self.codec, self.decoding.decoder.decode, self.guard, rows, row_params, switches)
        return [corrected[a:b] for a, b in ranges]

    def close(self) -> None:
        self.decoding.close()


def submit_corrections(
    codec: SpellTextCodec,
    inflight: InflightDecoder,
    guard: SpellGuard | None,
    texts: Sequence[str],
    spans: Sequence[tuple[int, int]],
    row_params: Sequence,
    use_guard: Sequence[bool],
    answers: Sequence[Callable[[list[str] | None, BaseException | None], None]],
) -> None:
    """In-flight form of :func:`correct_batch`: one tokenizer call for all texts, then each request (its rows
    ``spans[k]``) decodes as an in-flight job and ``answers[k](corrected, error)`` gets its texts as soon as its
    own rows are final (detokenized and guarded on the scheduler's thread)."""
    prepared = prepare_texts(codec, texts)
    jobs = []
    for (start, stop), answer in zip(spans, answers):
        own = prepared.select(start, stop)
        params = [row_params[start + i] for i in own.live]
        jobs.append((own.ids, own.mask, params, _finishing(codec, guard, own, use_guard[start:stop], answer)))
    inflight.submit_all(jobs)


def _finishing(codec, guard, prepared: PreparedTexts, use_guard, answer):
    def done(tokens, error):
        if error is None:
            try:
                texts = finish_texts(codec, guard, prepared, tokens, use_guard)
            except Exception as exc:  # the request still gets its answer: the error
                answer(None, exc)
                return
        answer(None if error else texts, error)

    return done


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
