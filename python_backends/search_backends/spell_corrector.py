"""In-process spell correction: text in, corrected text out, over the two ONNX graphs of search_build.spell_export.

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

import json
from pathlib import Path
from typing import Sequence

import numpy as np
from tokenizers import Tokenizer

from .onnx_runner import make_session
from .spell_generation import GenerationDefaults, generate

ENCODER_FILE = "spell_encoder.onnx"
DECODER_FILE = "spell_decoder.onnx"


def normalize_query(text: str, lowercase: bool = True) -> str:
    text = " ".join(text.split())
    return text.lower() if lowercase else text


class OnnxSpellModel:
    """The encode / decode_step callables of `spell_generation.generate` over ONNX Runtime sessions."""

    def __init__(self, model_dir: str | Path, intra_op_threads: int = 0, providers: Sequence[str] | None = None):
        model_dir = Path(model_dir)
        self.encoder = make_session(model_dir / ENCODER_FILE, intra_op_threads=intra_op_threads, providers=providers)
        self.decoder = make_session(model_dir / DECODER_FILE, intra_op_threads=intra_op_threads, providers=providers)
        self.cross_names = [o.name for o in self.encoder.get_outputs() if o.name.startswith("cross_")]
        self.past_names = [i.name for i in self.decoder.get_inputs() if i.name.startswith("past_")]
        self.present_names = [o.name for o in self.decoder.get_outputs() if o.name.startswith("present_")]

    def encode(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> list[np.ndarray]:
        return self.encoder.run(self.cross_names, {"input_ids": input_ids, "attention_mask": attention_mask})

    def decode_step(self, decoder_input_ids, encoder_attention_mask, past, cross):
        feed = {"decoder_input_ids": decoder_input_ids, "encoder_attention_mask": encoder_attention_mask}
        feed.update(zip(self.past_names, past))
        feed.update(zip(self.cross_names, cross))
        logits, *present = self.decoder.run(["logits", *self.present_names], feed)
        return logits, present


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
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.defaults = GenerationDefaults.from_model_dir(model_dir)
        self.pad_id = self._pad_id(model_dir)
        self.max_input_tokens = self._max_input_tokens(model_dir)
        self.lowercase = lowercase
        self.max_batch = max_batch

    def correct(self, texts: Sequence[str], **generation_overrides) -> list[str]:
        params = self.defaults.resolve(**generation_overrides)
        queries = [normalize_query(t, self.lowercase) for t in texts]
        splits = [self.split_to_fit(q) for q in queries]
        heads = [(i, head) for i, (head, _) in enumerate(splits) if head]
        results = [""] * len(texts)
        for start in range(0, len(heads), self.max_batch):
            chunk = heads[start : start + self.max_batch]
            ids, mask = self.encode_texts([head for _, head in chunk])
            outputs = generate(self.model.encode, self.model.decode_step, ids, mask, [params] * len(chunk))
            for (i, _), tokens in zip(chunk, outputs):
                results[i] = self.tokenizer.decode(tokens, skip_special_tokens=True)
        return [" ".join(filter(None, (out, tail))) for out, (_, tail) in zip(results, splits)]

    def encode_texts(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Right-padded int64 ids and mask; every text must already fit (see split_to_fit)."""
        rows = [enc.ids for enc in self.tokenizer.encode_batch(list(texts))]
        ids = np.full((len(rows), max(map(len, rows))), self.pad_id, dtype=np.int64)
        mask = np.zeros_like(ids)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return ids, mask

    def split_to_fit(self, query: str) -> tuple[str, str]:
        """(head the model sees, tail appended unchanged) under the module's truncation rule."""
        if not query or self._length(query) <= self.max_input_tokens:
            return query, ""
        words = query.split(" ")
        fitted = 0
        while fitted < len(words) and self._length(" ".join(words[: fitted + 1])) <= self.max_input_tokens:
            fitted += 1
        if fitted:
            return " ".join(words[:fitted]), " ".join(words[fitted:])
        first = words[0]
        cut = len(first)
        while cut > 1 and self._length(first[:cut]) > self.max_input_tokens:
            cut -= 1
        return first[:cut], " ".join([first[cut:], *words[1:]])

    def _length(self, text: str) -> int:
        return len(self.tokenizer.encode(text).ids)

    def _pad_id(self, model_dir: Path) -> int:
        config = json.loads((model_dir / "config.json").read_text())
        pad = config.get("pad_token_id")
        return int(pad) if pad is not None else int(self.tokenizer.token_to_id("<pad>") or 0)

    def _max_input_tokens(self, model_dir: Path) -> int:
        limits = [self.defaults.max_position_embeddings]
        tok_config = model_dir / "tokenizer_config.json"
        if tok_config.exists():
            limits.append(json.loads(tok_config.read_text()).get("model_max_length"))
        limits = [int(x) for x in limits if isinstance(x, (int, float)) and x < 1e9]
        if not limits:
            raise ValueError(f"{model_dir}: no input length limit in config.json or tokenizer_config.json")
        return min(limits)
