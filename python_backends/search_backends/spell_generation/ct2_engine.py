"""CTranslate2 as a decoding engine, kept token-for-token equal to HF ``generate()``.

CTranslate2's ``translate_batch`` runs the whole greedy / beam search in C++ (about 4x the numpy loop here).
Its search equals HF's for what is mapped below, and this module sends everything else to the exact loop
(:func:`spell_generation.generate`) instead of answering differently:

- HF forces ``forced_bos_token_id`` as the first token: a one-token ``target_prefix``.
- HF's lengths count the decoder start token and force EOS at ``max_length - 1`` (``forced_eos_token_id``):
  ``max_decoding_length`` counts the prefix but not the start token, so it is ``max_length - 2`` and EOS is
  appended to a capped hypothesis (``max_length - 1`` without a forced EOS). ``min_decoding_length`` is
  ``min_length - 1``.
- Beam search with ``early_stopping=True`` equals CTranslate2's ``patience=1`` (stop after num_beams
  finished hypotheses). ``early_stopping=False`` / ``"never"`` use HF's own stopping heuristics: exact loop.
- CTranslate2 masks EOS (``min_length``) and repeated n-grams (``no_repeat_ngram_size``) before its
  log-softmax, HF after: the argmax is the same (greedy is exact), beam scores are not. Beam search with
  either control: exact loop.
- A beam hypothesis that reaches the length cap is scored with one token less than HF's forced-EOS one, which
  can change which beam wins: such rows are decoded again by the exact loop.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .params import GenerationParams

ExactDecode = Callable[[np.ndarray, np.ndarray, Sequence[GenerationParams]], list]


def inexact_control(params: GenerationParams) -> str | None:
    """The control CTranslate2 would not honour exactly for ``params``, or None when it is exact."""
    cap = params.max_length - (2 if params.forced_eos_token_ids else 1)
    if cap <= (0 if params.forced_bos_token_id is None else 1):
        return f"max_length={params.max_length} (no free decoding step after the forced tokens)"
    if params.num_beams == 1:
        return None
    if params.early_stopping is not True:
        return f"early_stopping={params.early_stopping!r} with beam search"
    if params.min_length > 1:
        return "min_length with beam search"
    if params.no_repeat_ngram_size > 0:
        return "no_repeat_ngram_size with beam search"
    return None


class CTranslate2Generation:
    """``generate(input_ids, attention_mask, params) -> token ids per row`` like the loop, on CTranslate2.

    ``exact(input_ids, attention_mask, params)`` decodes the rows CTranslate2 cannot match (see the module
    docstring). Without it, a setting with an inexact control raises ValueError naming the control; a beam
    row that reaches the length cap keeps CTranslate2's result, which may differ from HF (serving always
    passes ``exact``: search_backends.spell_decoding).
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        device: str = "cpu",
        compute_type: str = "default",
        intra_threads: int = 0,
        inter_threads: int = 1,
        exact: ExactDecode | None = None,
    ):
        import ctranslate2

        model_dir = Path(model_dir)
        self.translator = ctranslate2.Translator(
            str(model_dir),
            device=device,
            compute_type=compute_type,
            intra_threads=intra_threads,
            inter_threads=inter_threads,
        )
        self.vocabulary = json.loads((model_dir / "shared_vocabulary.json").read_text(encoding="utf-8"))
        self.token_ids = {token: i for i, token in enumerate(self.vocabulary)}
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        self.decoder_start_id = self.token_ids[config["decoder_start_token"]]
        self.exact = exact

    def check(self, params: GenerationParams) -> None:
        if params.decoder_start_token_id != self.decoder_start_id:
            raise ValueError(
                f"decoder_start_token_id {params.decoder_start_token_id} differs from the converted "
                f"model's {self.decoder_start_id}"
            )
        reason = inexact_control(params)
        if reason and self.exact is None:
            raise ValueError(f"{reason}: not exact on the CTranslate2 engine and no exact decoder is loaded")

    def generate(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, params: Sequence[GenerationParams]
    ) -> list[list[int]]:
        input_ids, attention_mask = np.asarray(input_ids), np.asarray(attention_mask)
        for p in set(params):
            self.check(p)
        outputs: dict[int, list[int]] = {}  # row -> tokens; every row is filled below
        groups: dict[GenerationParams, list[int]] = defaultdict(list)
        to_exact: list[int] = []
        for row, p in enumerate(params):
            (to_exact if inexact_control(p) else groups[p]).append(row)
        for p, rows in groups.items():  # one translate_batch per distinct setting (usually one)
            for row, tokens, capped in zip(rows, *self._translate(input_ids[rows], attention_mask[rows], p)):
                if capped and p.num_beams > 1 and self.exact is not None:
                    to_exact.append(row)
                else:
                    outputs[row] = tokens
        if to_exact:
            assert self.exact is not None  # check() refused inexact controls without it; capped rows need it
            to_exact.sort()
            exact = self.exact(input_ids[to_exact], attention_mask[to_exact], [params[r] for r in to_exact])
            for row, tokens in zip(to_exact, exact):
                outputs[row] = list(tokens)
        return [outputs[row] for row in range(len(params))]

    def _translate(self, input_ids, attention_mask, p: GenerationParams):
        source = [[self.vocabulary[t] for t in ids[mask.astype(bool)]] for ids, mask in zip(input_ids, attention_mask)]
        prefix = [self.vocabulary[p.forced_bos_token_id]] if p.forced_bos_token_id is not None else None
        forced_eos = p.forced_eos_token_ids[0] if p.forced_eos_token_ids else None
        eos = list(p.eos_token_ids)
        results = self.translator.translate_batch(
            source,
            target_prefix=[prefix] * len(source) if prefix else None,
            max_batch_size=0,
            beam_size=p.num_beams,
            patience=1,
            length_penalty=p.length_penalty,
            no_repeat_ngram_size=p.no_repeat_ngram_size,
            max_decoding_length=p.max_length - (2 if forced_eos is not None else 1),
            min_decoding_length=max(p.min_length - 1, 0),
            end_token=[self.vocabulary[t] for t in eos] if eos else None,
            return_end_token=True,
        )
        tokens, capped = [], []
        for result in results:
            ids = [self.decoder_start_id, *(self.token_ids[t] for t in result.hypotheses[0])]
            hit_cap = not eos or ids[-1] not in eos
            if hit_cap and forced_eos is not None:
                ids.append(forced_eos)
            tokens.append(ids)
            capped.append(hit_cap)
        return tokens, capped
