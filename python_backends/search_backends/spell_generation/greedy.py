"""Greedy decoding of one request, step for step as HF `generate()` with num_beams=1, do_sample=False."""

from __future__ import annotations

import numpy as np

from .logits import process_scores
from .params import GenerationParams


class GreedySearch:
    """One decoder row. `step` takes that row's logits and returns which cache row to keep (always its own)."""

    rows = 1

    def __init__(self, params: GenerationParams):
        self.params = params
        self.tokens = np.array([[params.decoder_start_token_id]], dtype=np.int64)
        self.done = False

    def last_tokens(self) -> np.ndarray:
        return self.tokens[:, -1]

    def step(self, logits: np.ndarray) -> np.ndarray:
        scores = process_scores(logits, self.tokens, self.params)
        token = int(np.argmax(scores[0]))  # first maximum, like torch.argmax
        self.tokens = np.concatenate([self.tokens, [[token]]], axis=1)
        self.done = token in self.params.eos_token_ids or self.tokens.shape[1] >= self.params.max_length
        return np.zeros(1, dtype=np.int64)

    def result(self) -> list[int]:
        return self.tokens[0].tolist()
