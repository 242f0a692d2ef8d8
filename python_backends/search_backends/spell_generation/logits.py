"""Score processing of HF `generate()` in numpy float32, in HF's order.

Order (transformers `_get_logits_processor`): no_repeat_ngram -> min_length -> forced_bos -> forced_eos.
(HF's separate min_new_tokens processor bans EOS under exactly the same condition as min_length once
min_length = min_new_tokens + 1, so `GenerationParams.min_length` covers both.)
Greedy search processes raw logits; beam search processes log-softmax scores.
"""

from __future__ import annotations

import numpy as np

from .params import GenerationParams

NEG_INF = np.float32(-np.inf)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float32, copy=False)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def ban_repeated_ngrams(scores: np.ndarray, sequences: np.ndarray, n: int) -> None:
    """In place: a token that would complete an n-gram already present in its row gets -inf."""
    cur_len = sequences.shape[1]
    if n <= 0 or cur_len < n:
        return
    windows = np.lib.stride_tricks.sliding_window_view(sequences, n, axis=1)  # [rows, cur_len-n+1, n]
    prefix = sequences[:, cur_len + 1 - n :]  # the last n-1 tokens
    matches = (windows[..., :-1] == prefix[:, None, :]).all(axis=-1)
    rows, starts = np.nonzero(matches)
    tokens = windows[rows, starts, -1]
    inside = tokens < scores.shape[1]
    scores[rows[inside], tokens[inside]] = NEG_INF


def force_tokens(scores: np.ndarray, token_ids: tuple[int, ...]) -> None:
    scores[:] = NEG_INF
    scores[:, list(token_ids)] = 0.0


def process_scores(scores: np.ndarray, sequences: np.ndarray, params: GenerationParams) -> np.ndarray:
    """scores: float32 [rows, V] (a copy is modified); sequences: int64 [rows, cur_len] incl. the start token."""
    scores = np.array(scores, dtype=np.float32, copy=True)
    cur_len = sequences.shape[1]
    ban_repeated_ngrams(scores, sequences, params.no_repeat_ngram_size)
    if params.eos_token_ids and cur_len < params.min_length:
        scores[:, list(params.eos_token_ids)] = NEG_INF
    if params.forced_bos_token_id is not None and cur_len == 1:
        force_tokens(scores, (params.forced_bos_token_id,))
    if params.forced_eos_token_ids and cur_len == params.max_length - 1:
        force_tokens(scores, params.forced_eos_token_ids)
    return scores


def top_k_stable(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, best first; ties go to the lower index. O(n) selection, exact order."""
    k = min(k, scores.size)
    if k == scores.size:
        return np.argsort(-scores, kind="stable")
    kth = np.partition(scores, scores.size - k)[scores.size - k]
    candidates = np.flatnonzero(scores >= kth)
    return candidates[np.argsort(-scores[candidates], kind="stable")][:k]
