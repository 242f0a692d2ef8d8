"""One batched decoding loop for many requests, over two callables, so the same code drives in-process ONNX
Runtime sessions or Triton BLS calls.

    encode(input_ids, attention_mask) -> list of arrays, batch on axis 0: the decoder's cross-attention K/V
        (cross_key_0, cross_value_0, cross_key_1, ... in spell_decoder.onnx input order)
    decode_step(decoder_input_ids [N, 1], encoder_attention_mask [N, S], past, cross) -> (logits [N, V], present)
        past / present: self-attention K/V per layer [N, H, T, Dh] / [N, H, T+1, Dh], same order as cross

Requests keep their own parameters (greedy or any num_beams, lengths, penalties): each request owns a block of
rows (1 for greedy, num_beams for beam search) and all live rows of all requests go through one decoder call per
step (:class:`Cohort`). A request whose result is final leaves the batch at once. Results come back per request,
in input order, as token ids starting with the decoder start token.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .beam import BeamSearch
from .greedy import GreedySearch
from .params import GenerationParams

Encode = Callable[[np.ndarray, np.ndarray], list]
DecodeStep = Callable[[np.ndarray, np.ndarray, list, list], tuple]


def search_for(params: GenerationParams) -> GreedySearch | BeamSearch:
    return BeamSearch(params) if params.num_beams > 1 else GreedySearch(params)


class Cohort:
    """Requests that start decoding together: one encoder call, then one decoder call per :meth:`step` for all
    their live rows. A request leaves as soon as its result is final; the cache, cross K/V and mask shrink with it.

    Cohorts are independent, so an iteration-level scheduler (``inflight.InflightDecoder``) can step cohorts that
    started at different times side by side: every row of a decoder call shares one past length.
    """

    def __init__(self, encode: Encode, input_ids: np.ndarray, attention_mask: np.ndarray, params):
        input_ids = np.asarray(input_ids, dtype=np.int64)
        attention_mask = np.asarray(attention_mask, dtype=np.int64)
        if input_ids.ndim != 2 or input_ids.shape != attention_mask.shape:
            raise ValueError(
                f"input_ids {input_ids.shape} and attention_mask {attention_mask.shape} must be equal 2-D shapes"
            )
        if len(params) != input_ids.shape[0]:
            raise ValueError(f"{len(params)} parameter sets for {input_ids.shape[0]} requests")
        if (attention_mask.sum(axis=1) == 0).any():
            raise ValueError("every request needs at least one attended input token")
        self.searches = [search_for(p) for p in params]
        self.live = list(range(len(self.searches)))
        if not self.searches:
            return
        cross = list(encode(input_ids, attention_mask))
        block = np.repeat(np.arange(len(self.searches)), [s.rows for s in self.searches])  # row -> request
        self.cross = [c[block] for c in cross]
        self.mask = attention_mask[block]
        _, heads, _, head_dim = self.cross[0].shape
        self.past = [np.zeros((len(block), heads, 0, head_dim), dtype=self.cross[0].dtype) for _ in self.cross]

    @property
    def done(self) -> bool:
        return not self.live

    @property
    def live_rows(self) -> int:
        return sum(self.searches[r].rows for r in self.live)

    def step(self, decode_step: DecodeStep) -> list[int]:
        """One decoder call for every live row; the indices of the requests whose result became final."""
        live, searches = self.live, self.searches
        tokens = np.concatenate([searches[r].last_tokens() for r in live])[:, None]
        logits, present = decode_step(tokens, self.mask, self.past, self.cross)
        logits = np.asarray(logits)
        cache_rows, block_rows, still_live, finished, start = [], [], [], [], 0
        for r in live:
            search = searches[r]
            reorder = search.step(logits[start : start + search.rows])
            if search.done:
                finished.append(r)
            else:
                cache_rows.append(start + reorder)
                block_rows.append(np.arange(start, start + search.rows))
                still_live.append(r)
            start += search.rows
        self.live = still_live
        if not still_live:
            self.past = self.cross = []
            return finished
        cache_index = np.concatenate(cache_rows)
        self.past = list(present) if _is_identity(cache_index, start) else [x[cache_index] for x in present]
        if finished:  # all rows of a request share its cross K/V: regather only on leave
            block_index = np.concatenate(block_rows)
            self.cross = [c[block_index] for c in self.cross]
            self.mask = self.mask[block_index]
        return finished

    def result(self, index: int) -> list[int]:
        return self.searches[index].result()


def generate(
    encode: Encode,
    decode_step: DecodeStep,
    input_ids: np.ndarray,
    attention_mask: np.ndarray,
    params: Sequence[GenerationParams],
) -> list[list[int]]:
    cohort = Cohort(encode, input_ids, attention_mask, params)
    while not cohort.done:
        cohort.step(decode_step)
    return [cohort.result(i) for i in range(len(cohort.searches))]


def _is_identity(index: np.ndarray, size: int) -> bool:
    return index.size == size and bool((index == np.arange(size)).all())
