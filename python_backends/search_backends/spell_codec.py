"""Text <-> token ids for the spell corrector, with its normalisation and truncation rules.

Rules (shared by the in-process SpellCorrector and the Triton spell_tokenize/spell_detokenize models):
- text is normalised: whitespace runs collapsed, ends stripped, lower-cased (the model knows lowercase only);
- text longer than the model's input limit is split at a word boundary: the longest run of leading whole
  words that fits is corrected, the rest (the "tail") is appended unchanged to the output; a single word
  that alone is too long is cut at a character boundary and its rest joins the tail.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
from tokenizers import Tokenizer


def normalize_query(text: str, lowercase: bool = True) -> str:
    text = " ".join(text.split())
    return text.lower() if lowercase else text


class SpellTextCodec:
    def __init__(self, model_dir: str | Path, lowercase: bool = True):
        model_dir = Path(model_dir)
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        config = json.loads((model_dir / "config.json").read_text())
        pad = config.get("pad_token_id")
        self.pad_id = int(pad) if pad is not None else int(self.tokenizer.token_to_id("<pad>") or 0)
        limits = [config.get("max_position_embeddings")]
        tok_config = model_dir / "tokenizer_config.json"
        if tok_config.exists():
            limits.append(json.loads(tok_config.read_text()).get("model_max_length"))
        limits = [int(x) for x in limits if isinstance(x, (int, float)) and not isinstance(x, bool) and 0 < x < 1e9]
        if not limits:
            raise ValueError(f"{model_dir}: no input length limit in config.json or tokenizer_config.json")
        self.max_input_tokens = min(limits)
        self.lowercase = lowercase

    def prepare(self, texts: Sequence[str]) -> list[tuple[str, str]]:
        """(head the model sees, tail appended unchanged) for each text, after normalisation."""
        return [self.split_to_fit(normalize_query(t, self.lowercase)) for t in texts]

    def encode(self, heads: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Right-padded int64 ids and mask in one batch call; every head must already fit."""
        rows = [enc.ids for enc in self.tokenizer.encode_batch(list(heads))]
        ids = np.full((len(rows), max(map(len, rows), default=1)), self.pad_id, dtype=np.int64)
        mask = np.zeros_like(ids)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return ids, mask

    def decode_heads(self, token_rows: Sequence[Sequence[int]]) -> list[str]:
        """Generated ids -> text, exactly as the tokenizer decodes them (what HF generate + decode gives)."""
        return self.tokenizer.decode_batch([list(map(int, r)) for r in token_rows], skip_special_tokens=True)

    @staticmethod
    def join_tails(heads: Sequence[str], tails: Sequence[str]) -> list[str]:
        return [" ".join(filter(None, (head, tail))) for head, tail in zip(heads, tails)]

    def split_to_fit(self, query: str) -> tuple[str, str]:
        if not query or self._length(query) <= self.max_input_tokens:
            return query, ""
        words = query.split(" ")
        fitted = 0
        while fitted < len(words) and self._length(" ".join(words[: fitted + 1])) <= self.max_input_tokens:
            fitted += 1
        if fitted:
            return " ".join(words[:fitted]), " ".join(words[fitted:])
        first = words[0]
        lo, hi = 1, len(first)  # longest prefix that fits; binary search keeps a 64 KB "word" cheap
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._length(first[:mid]) <= self.max_input_tokens:
                lo = mid
            else:
                hi = mid - 1
        return first[:lo], " ".join([first[lo:], *words[1:]])

    def _length(self, text: str) -> int:
        return len(self.tokenizer.encode(text).ids)
