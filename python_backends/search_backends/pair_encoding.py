"""Encode product-listing pairs as one cross-encoder sequence: ``[CLS] A [SEP] B [SEP]``.

Each side is its fields joined by a separator token: ``type | title | description`` (missing or
empty fields are left out together with their separator).

Truncation policy (the sequence must fit ``max_length`` tokens, special tokens included):

1. Fields are kept in priority order: product type, then title, then description. Each stage
   spends what the earlier stages left: types (each capped at ``max_type_tokens``) and titles are
   kept whole unless they alone overflow; descriptions get whatever remains.
2. Within a stage the two sides share the budget fairly (longest-first): the shorter field keeps
   all its tokens when it fits in half, and the longer one gets the rest. So a long description
   on one side cannot push out the other side's description.
3. A field is truncated from its end (the start of a title or description says the most).
4. A field cut down to nothing but its separator is dropped (at most one token per side goes
   unused), and once a stage had to cut, later stages get nothing.

All strings of a batch go through the fast tokenizer in one ``encode_batch`` call. Rows are
right-padded to the longest row rounded up to ``pad_to_multiple_of``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
from tokenizers import Tokenizer

from .contracts.product_search import A_TITLE, B_TITLE, FIELDS_PER_PRODUCT, PAIR_FIELDS
from .text_input import InputError, decode_text
from .tokenization import CHARS_PER_TOKEN_LIMIT, EncodedBatch, round_up


class ProductRecord(Protocol):
    """The fields of one listing that :meth:`PairEncoder.encode_records` reads."""

    @property
    def product_type(self) -> str | None: ...
    @property
    def title(self) -> str | None: ...
    @property
    def description(self) -> str | None: ...


FIELDS = ("type", "title", "description")


def pair_columns(values: Sequence[np.ndarray | None]) -> list[list[str]]:
    """One request's six field inputs (in ``PAIR_FIELDS`` order; None = not sent) -> six equally long columns of
    stripped text, a missing field as "". Raises :class:`InputError` for columns of different lengths, a request
    with no field at all, or a row where a product has no non-empty field."""
    if len(values) != len(PAIR_FIELDS):
        raise ValueError(f"expected {len(PAIR_FIELDS)} field inputs ({', '.join(PAIR_FIELDS)}), got {len(values)}")
    columns: list[list[str] | None] = []
    rows = None
    for name, value in zip(PAIR_FIELDS, values):
        if value is None:
            columns.append(None)
            continue
        column = [decode_text(v, field=name, allow_empty=True).strip() for v in np.asarray(value).reshape(-1)]
        if rows is not None and len(column) != rows:
            raise InputError(f"{name}: {len(column)} rows, other fields have {rows}")
        rows = len(column)
        columns.append(column)
    if rows is None:
        raise InputError(
            f"a product pair needs at least one field per product ({A_TITLE}, {B_TITLE}, ...): "
            f"all of {', '.join(PAIR_FIELDS)} are missing"
        )
    full = [c if c is not None else [""] * rows for c in columns]
    for r in range(rows):
        for side in (0, FIELDS_PER_PRODUCT):
            if not any(full[c][r] for c in range(side, side + FIELDS_PER_PRODUCT)):
                names = PAIR_FIELDS[side : side + FIELDS_PER_PRODUCT]
                raise InputError(
                    f"row {r}: product {names[0][0]} has no text: {', '.join(names)} are all "
                    "missing or empty; each product needs at least one non-empty field"
                )
    return full


def fair_allocate(lengths: Sequence[int], budget: int) -> list[int]:
    """Longest-first split of ``budget`` tokens: maximise the smallest share, never exceed a length.

    Equivalent to repeatedly removing one token from the currently longest field.
    """
    lengths = [max(0, int(n)) for n in lengths]
    budget = max(0, int(budget))
    if sum(lengths) <= budget:
        return lengths
    # Largest common level L with sum(min(n, L)) <= budget, then leftovers to the first fields above L.
    lo, hi = 0, max(lengths)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if sum(min(n, mid) for n in lengths) <= budget:
            lo = mid
        else:
            hi = mid - 1
    shares = [min(n, lo) for n in lengths]
    spare = budget - sum(shares)
    for i, n in enumerate(lengths):
        if spare and n > lo:
            shares[i] += 1
            spare -= 1
    return shares


class PairEncoder:
    """Turns batches of (A fields, B fields) into int64 ``input_ids``/``attention_mask``/``token_type_ids``."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        max_length: int = 128,
        pad_to_multiple_of: int = 8,
        max_type_tokens: int = 16,
        field_separator: str = "|",
        pad_id: int = 0,
    ):
        if max_length < 8:
            raise ValueError("max_length must leave room for the special tokens and some text")
        self.tokenizer = tokenizer
        self.tokenizer.no_padding()
        # Per-field cap; the policy above then trims further. Bounds the work on huge fields.
        self.tokenizer.enable_truncation(max_length)
        self.max_length = max_length
        self.pad_to_multiple_of = pad_to_multiple_of
        self.max_type_tokens = max_type_tokens
        self.pad_id = pad_id
        self.cls_id = _token_id(tokenizer, "[CLS]")
        self.sep_id = _token_id(tokenizer, "[SEP]")
        self.field_sep_ids = tokenizer.encode(field_separator, add_special_tokens=False).ids
        if len(self.field_sep_ids) != 1:
            raise ValueError(f"field separator {field_separator!r} must be a single token")

    @classmethod
    def from_dir(cls, tokenizer_dir: str | Path, **kwargs) -> "PairEncoder":
        """Load ``tokenizer.json`` from a Hugging Face checkpoint directory (no transformers import)."""
        tokenizer_dir = Path(tokenizer_dir)
        tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
        kwargs.setdefault("pad_id", tokenizer.token_to_id("[PAD]") or 0)
        return cls(tokenizer, **kwargs)

    def encode(
        self,
        a_type: Sequence[str | None],
        a_title: Sequence[str | None],
        a_description: Sequence[str | None],
        b_type: Sequence[str | None],
        b_title: Sequence[str | None],
        b_description: Sequence[str | None],
        pad_to: int | None = None,
    ) -> EncodedBatch:
        columns = [a_type, a_title, a_description, b_type, b_title, b_description]
        n = len(a_type)
        if any(len(c) != n for c in columns):
            raise ValueError("all six field columns must have the same length")
        clip = self.max_length * CHARS_PER_TOKEN_LIMIT
        texts = [(v or "")[:clip] for column in columns for v in column]
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        ids = [e.ids for e in encodings]
        rows = [self._assemble([ids[c * n + i] for c in range(6)]) for i in range(n)]

        longest = max((len(a) + len(b) for a, b in rows), default=1)
        width = pad_to or round_up(max(longest, 1), self.pad_to_multiple_of)
        input_ids = np.full((n, width), self.pad_id, dtype=np.int64)
        attention_mask = np.zeros((n, width), dtype=np.int64)
        token_type_ids = np.zeros((n, width), dtype=np.int64)
        for i, (first, second) in enumerate(rows):
            total = len(first) + len(second)
            input_ids[i, :total] = first + second
            attention_mask[i, :total] = 1
            token_type_ids[i, len(first) : total] = 1
        return EncodedBatch(input_ids, attention_mask, token_type_ids)

    def encode_records(
        self, pairs: Sequence[tuple[ProductRecord, ProductRecord]], pad_to: int | None = None
    ) -> EncodedBatch:
        """Pairs of objects with ``product_type``, ``title`` and ``description`` attributes."""
        a, b = [p[0] for p in pairs], [p[1] for p in pairs]
        return self.encode(
            [r.product_type for r in a],
            [r.title for r in a],
            [r.description for r in a],
            [r.product_type for r in b],
            [r.title for r in b],
            [r.description for r in b],
            pad_to=pad_to,
        )

    def _assemble(self, fields: list[list[int]]) -> tuple[list[int], list[int]]:
        """Six field token lists (A type, title, description, B ...) -> ([CLS] A [SEP], B [SEP])."""
        sides = [fields[:3], fields[3:]]
        sides[0][0] = sides[0][0][: self.max_type_tokens]
        sides[1][0] = sides[1][0][: self.max_type_tokens]
        budget = self.max_length - 3
        kept: list[list[list[int]]] = [[], []]  # per side, the kept pieces (separator included)
        for stage in range(3):
            pieces, seps = [], []
            for s in range(2):
                tokens = sides[s][stage]
                seps.append(int(bool(tokens) and any(kept[s])))
                pieces.append(self.field_sep_ids * seps[s] + tokens)
            shares = fair_allocate([len(p) for p in pieces], budget)
            for s in range(2):
                piece = pieces[s][: shares[s]] if shares[s] > seps[s] else []  # not a lone separator
                kept[s].append(piece)
                budget -= len(piece)
            if any(shares[s] < len(pieces[s]) for s in range(2)):
                budget = 0  # a field was cut: later (less important) fields get nothing
        first = [self.cls_id] + [t for piece in kept[0] for t in piece] + [self.sep_id]
        second = [t for piece in kept[1] for t in piece] + [self.sep_id]
        return first, second


def _token_id(tokenizer: Tokenizer, token: str) -> int:
    token_id = tokenizer.token_to_id(token)
    if token_id is None:
        raise ValueError(f"tokenizer has no {token} token; expected a BERT-style vocabulary")
    return token_id
