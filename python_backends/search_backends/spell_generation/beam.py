"""Beam search of one request, reproducing transformers' vectorised `_beam_search` (v4.50+ / v5) exactly.

Per step, with k beams and K = max(2, 1 + #eos) * k candidates, all in float32 like HF:
  1. scores = processors(log_softmax(logits)) + running beam scores; take the top K over k*V.
  2. candidates that emit EOS or reach max_length "hit" a stop; the best k non-hitting become the running beams.
  3. hits among the first k candidates enter the finished pool with score / (generated_length ** length_penalty),
     unless the pool is full under early_stopping=True or the early-stop heuristic says no improvement is possible.
  4. the request is done once HF could no longer change its result: heuristic satisfied, early_stopping=True with a
     full pool, or max_length reached. HF keeps stepping such a request while others in its batch run; its result
     is frozen by then, so here it simply leaves the batch.
The result is the best finished hypothesis, tokens up to and including its EOS (or max_length tokens).
"""

from __future__ import annotations

import numpy as np

from .logits import log_softmax, process_scores, top_k_stable
from .params import GenerationParams

PENALTY = np.float32(-1.0e9)  # HF's "never pick this" offset


class BeamSearch:
    def __init__(self, params: GenerationParams):
        self.params = params
        self.rows = k = params.num_beams
        self.keep = max(2, 1 + len(params.eos_token_ids)) * k
        self.running = np.full((k, 1), params.decoder_start_token_id, dtype=np.int64)
        self.running_scores = np.zeros(k, dtype=np.float32)
        self.running_scores[1:] = PENALTY  # only beam 0 may expand at first: all beams start identical
        # empty pool slots hold the bare start token, like HF's initial `sequences` (seen only if every score is -inf)
        self.finished = [self.running[0].copy() for _ in range(k)]
        self.finished_scores = np.full(k, PENALTY, dtype=np.float32)
        self.is_finished = np.zeros(k, dtype=bool)
        self.improvement_possible = True
        self.done = False

    def last_tokens(self) -> np.ndarray:
        return self.running[:, -1]

    def step(self, logits: np.ndarray) -> np.ndarray:
        """logits [k, V] of the running beams -> cache row (0..k-1) each new running beam continues from."""
        p, k = self.params, self.rows
        cur_len = self.running.shape[1]
        vocab = logits.shape[1]

        scores = process_scores(log_softmax(logits), self.running, p)
        scores = (scores + self.running_scores[:, None]).reshape(-1)
        top = top_k_stable(scores, self.keep)
        top_scores = scores[top]
        source, tokens = top // vocab, top % vocab
        candidates = np.concatenate([self.running[source], tokens[:, None]], axis=1)
        hits = np.isin(tokens, p.eos_token_ids) | (cur_len + 1 >= p.max_length)

        # running beams for the next step
        running_scores = top_scores + hits.astype(np.float32) * PENALTY
        best = top_k_stable(running_scores, k)
        self.running, self.running_scores, reorder = candidates[best], running_scores[best], source[best]

        # finished pool
        just_finished = hits & (np.arange(self.keep) < k)
        final = top_scores / np.float32((cur_len + 1 - 1) ** p.length_penalty)
        pool_full = bool(self.is_finished.all()) and p.early_stopping is True
        final = final + np.float32(pool_full) * PENALTY
        final = final + np.float32(not self.improvement_possible) * PENALTY
        final = final + (~just_finished).astype(np.float32) * PENALTY
        merged_scores = np.concatenate([self.finished_scores, final])
        keep = top_k_stable(merged_scores, k)
        pool = self.finished + [candidates[i] for i in range(self.keep)]
        merged_finished = np.concatenate([self.is_finished, just_finished])
        self.finished = [pool[i] for i in keep]
        self.finished_scores, self.is_finished = merged_scores[keep], merged_finished[keep]

        # stopping
        cur_len += 1
        if p.early_stopping == "never" and p.length_penalty > 0.0:
            best_length = p.max_length - 1
        else:
            best_length = cur_len - 1
        best_running = self.running_scores[0] / np.float32(best_length**p.length_penalty)
        worst_finished = np.where(self.is_finished, self.finished_scores.min(), PENALTY)
        self.improvement_possible = self.improvement_possible and bool(np.any(best_running > worst_finished))
        all_finished = bool(self.is_finished.all())
        self.done = (
            not self.improvement_possible or (all_finished and p.early_stopping is True) or cur_len >= p.max_length
        )
        return reorder

    def result(self) -> list[int]:
        return self.finished[0].tolist()
