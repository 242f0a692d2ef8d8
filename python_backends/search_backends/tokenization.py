"""Batch tokenization for encoder models: all texts of a Triton batch in one fast-tokenizer call."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
from tokenizers import Tokenizer

from .contracts.query_embedding import (
    DEFAULT_MAX_LENGTH,
    DEFAULT_PAD_TO_MULTIPLE,
    MAX_LENGTH_PARAMETER,
    PAD_TO_MULTIPLE_PARAMETER,
    TOKENIZER_DIR,
    TOKENIZER_DIR_PARAMETER,
)
from .model_parameters import int_parameter


@dataclass(frozen=True)
class EncodedBatch:
    input_ids: np.ndarray  # int64 [N, L]
    attention_mask: np.ndarray  # int64 [N, L]
    token_type_ids: np.ndarray  # int64 [N, L]

    def rows(self, start: int, stop: int, length: int | None = None) -> "EncodedBatch":
        """Rows [start, stop) cut to ``length`` columns (their own padded length)."""
        cut = slice(None, length)
        return EncodedBatch(
            self.input_ids[start:stop, cut], self.attention_mask[start:stop, cut], self.token_type_ids[start:stop, cut]
        )

    def request_rows(self, start: int, stop: int, pad_to_multiple_of: int) -> "EncodedBatch":
        """Rows [start, stop) (one request's) cut to the width they would have had encoded on their own, so a
        request's tensors do not depend on what it shared a batch with."""
        longest = int(self.attention_mask[start:stop].sum(axis=1).max())
        return self.rows(start, stop, max(pad_to_multiple_of, round_up(longest, pad_to_multiple_of)))


# Tokenizing a 64 KB text only to keep ~128 tokens would stall the batch: text is clipped to this many
# characters per kept token first. No word piece is shorter than one character, so the clip changes
# nothing in practice (only whitespace runs or single "words" longer than that would be cut earlier).
CHARS_PER_TOKEN_LIMIT = 16


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple if multiple > 1 else n


class BatchTokenizer:
    """Wraps a Hugging Face *fast* tokenizer (``tokenizer.json``) without importing transformers.

    Truncation rule: text longer than ``max_length`` tokens keeps its first ``max_length - 2``
    word pieces plus the special tokens (the head of a query carries its meaning); text is clipped to
    ``max_length * CHARS_PER_TOKEN_LIMIT`` characters before tokenization. Padding goes to
    a multiple of ``pad_to_multiple_of`` so that requests batch together in engines whose shapes
    must match and the kernels see friendly sizes.
    """

    def __init__(self, tokenizer_dir: str | Path, max_length: int = 128, pad_to_multiple_of: int = 8):
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
            raise ValueError(f"max_length must be an integer >= 2 (room for the special tokens), got {max_length!r}")
        if isinstance(pad_to_multiple_of, bool) or not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of < 1:
            raise ValueError(f"pad_to_multiple_of must be an integer >= 1, got {pad_to_multiple_of!r}")
        tokenizer_dir = Path(tokenizer_dir)
        self.tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
        model_max = _model_max_length(tokenizer_dir)
        self.max_length = min(max_length, model_max) if model_max else max_length
        self.pad_to_multiple_of = pad_to_multiple_of
        self.pad_id = _pad_id(self.tokenizer, tokenizer_dir)
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)

    def encode(self, texts: list[str], pad_to: int | None = None) -> EncodedBatch:
        """Tokenize ``texts`` together; rows padded to the longest (rounded up), or ``pad_to``."""
        clip = self.max_length * CHARS_PER_TOKEN_LIMIT
        encodings = self.tokenizer.encode_batch([text[:clip] for text in texts])
        longest = max((len(e.ids) for e in encodings), default=1)
        width = pad_to or min(
            round_up(longest, self.pad_to_multiple_of), round_up(self.max_length, self.pad_to_multiple_of)
        )
        ids = np.full((len(texts), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.int64)
        types = np.zeros((len(texts), width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            mask[row, :n] = 1
            types[row, :n] = enc.type_ids
        return EncodedBatch(ids, mask, types)

    @classmethod
    def from_parameters(cls, folder: str | Path, params: Mapping[str, str]) -> "BatchTokenizer":
        """The tokenizer a model's config parameters describe (its folder relative to the version ``folder``)."""
        return cls(
            Path(folder) / params.get(TOKENIZER_DIR_PARAMETER, TOKENIZER_DIR),
            max_length=int_parameter(params, MAX_LENGTH_PARAMETER, DEFAULT_MAX_LENGTH, minimum=2),
            pad_to_multiple_of=int_parameter(params, PAD_TO_MULTIPLE_PARAMETER, DEFAULT_PAD_TO_MULTIPLE, minimum=1),
        )


def _model_max_length(tokenizer_dir: Path) -> int | None:
    cfg = tokenizer_dir / "tokenizer_config.json"
    if cfg.exists():
        value = json.loads(cfg.read_text()).get("model_max_length")
        if isinstance(value, int) and 0 < value < 1_000_000:
            return value
    return None


def _pad_id(tokenizer: Tokenizer, tokenizer_dir: Path) -> int:
    cfg = tokenizer_dir / "tokenizer_config.json"
    pad_token = None
    if cfg.exists():
        pad_token = json.loads(cfg.read_text()).get("pad_token")
        if isinstance(pad_token, dict):
            pad_token = pad_token.get("content")
    for candidate in (pad_token, "[PAD]", "<pad>"):
        token_id = tokenizer.token_to_id(candidate) if candidate else None
        if token_id is not None:
            return token_id
    return 0
