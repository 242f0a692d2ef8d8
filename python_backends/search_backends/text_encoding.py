"""Texts -> an encoder graph's outputs, and with an intent head its predictions, in one tokenizer call and one
engine call for a whole batch.

The local target's fused encoder stub (``text_encoder``) and the in-process search bar
(``search_backends.search_bar.in_process_stages``) both run this, from the same config parameters, so a stage
called on its own and the same stage inside the search bar compute the same thing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .contracts.product_search import HEAD_FILE_PARAMETER
from .graph_engines import engine_from_parameters
from .heads import IntentHead
from .request_rows import flatten_rows
from .tokenization import BatchTokenizer


class TextEncoder:
    def __init__(self, tokenizer: BatchTokenizer, engine, head: IntentHead | None = None):
        self.tokenizer, self.engine, self.head = tokenizer, engine, head

    @classmethod
    def from_parameters(cls, folder: str | Path, params: Mapping[str, str], threads: int = 0) -> "TextEncoder":
        """The encoder a fused stage's config parameters describe (files relative to its version ``folder``)."""
        folder = Path(folder)
        engine = engine_from_parameters(folder, params, threads=threads)
        head = IntentHead.from_parameters(folder, params) if params.get(HEAD_FILE_PARAMETER) else None
        return cls(BatchTokenizer.from_parameters(folder, params), engine, head)

    def outputs(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The graph's outputs by name for ``texts``, one row each."""
        batch = self.tokenizer.encode(list(texts))
        feeds = {name: getattr(batch, name) for name in self.engine.input_names}
        return dict(zip(self.engine.output_names, self.engine.infer(feeds)))

    def pooled(self, texts: Sequence[str]) -> np.ndarray:
        """The graph's first output (the pooled, for embedding graphs L2-normalised, vector), one row per text."""
        return self.outputs(texts)[self.engine.output_names[0]]

    def compute(self, payloads: Sequence[tuple[Sequence[str], int | None]], names: Sequence[str]) -> list[dict]:
        """Each request's ``(texts, top_k)`` -> its outputs: the graph's outputs ``names`` (no head), or the head's
        label, probabilities and top-k (k: the request's, None only without a head)."""
        rows, ranges = flatten_rows([texts for texts, _ in payloads])
        if not rows:
            return []
        outputs = self.outputs(rows)
        if self.head is None:
            return [{name: outputs[name][a:b] for name in names} for a, b in ranges]
        pooled = outputs[self.engine.output_names[0]]
        spans = [(a, b, self.head.top_k(None) if k is None else k) for (a, b), (_, k) in zip(ranges, payloads)]
        predictions = self.head.predict(pooled, spans)
        return [prediction.outputs() for prediction in predictions]
