"""Triton adapter: generated token ids (+ untouched tail) -> corrected text, through the no-damage guard
(search_backends.spell_guard) unless the request switches it off."""

from __future__ import annotations

import json

import numpy as np

from search_backends.spell_codec import SpellTextCodec
from search_backends.contracts.spell_correct import (
    CORRECTED,
    GUARD_INPUT,
    MODEL_DIR,
    MODEL_DIR_PARAMETER,
    OUTPUT_IDS,
    SOURCE,
    TAIL,
)
from search_backends.spell_guard import SpellGuard, guard_switch
from search_backends.text_input import InputError
from triton_helpers import guarded, input_error_response, model_setup, respond, tensor_or_none


def _texts(values) -> list[str]:
    return [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in values.reshape(-1)]


class TritonPythonModel:
    def initialize(self, args):
        setup = model_setup(args)
        self.dtypes = setup.dtypes
        model_dir = setup.folder / setup.params.get(MODEL_DIR_PARAMETER, MODEL_DIR)
        self.codec = SpellTextCodec(model_dir)
        self.guard = SpellGuard.from_model_dir(model_dir)

    @guarded
    def execute(self, requests):
        rows, tails, sources, use_guard, spans = [], [], [], [], []
        responses = [None] * len(requests)
        for i, request in enumerate(requests):
            try:
                switch = guard_switch(tensor_or_none(request, GUARD_INPUT), json.loads(request.parameters() or "{}"))
            except InputError as exc:
                responses[i] = input_error_response(str(exc))
                continue
            ids = tensor_or_none(request, OUTPUT_IDS)
            spans.append((i, len(rows), len(rows) + len(ids)))
            rows.extend(ids.tolist())
            tails.extend(_texts(tensor_or_none(request, TAIL)))
            sources.extend(_texts(tensor_or_none(request, SOURCE)))
            use_guard.extend([switch] * len(ids))
        heads = self.codec.decode_heads(rows)  # one batch decode; pad/special tokens are skipped
        if self.guard is not None:
            heads = self.guard.apply_where(sources, heads, use_guard)
        texts = self.codec.join_tails(heads, tails)
        for i, start, stop in spans:
            out = np.array([[t.encode("utf-8")] for t in texts[start:stop]], dtype=np.object_)
            responses[i] = respond({CORRECTED: out}, self.dtypes)
        return responses
