"""Triton adapter: query text -> spell-model token ids, the normalised head the model sees (SOURCE, for the
guard) and the tail that does not fit (search_backends.spell_codec)."""

from __future__ import annotations

import numpy as np

from search_backends.spell_codec import SpellTextCodec
from search_backends.contracts.spell_correct import (
    ATTENTION_MASK,
    INPUT_IDS,
    MODEL_DIR,
    MODEL_DIR_PARAMETER,
    SOURCE,
    TAIL,
    TEXT,
)
from triton_helpers import gather_texts, guarded, model_setup, respond


class TritonPythonModel:
    def initialize(self, args):
        setup = model_setup(args)
        params = setup.params
        self.dtypes = setup.dtypes
        self.codec = SpellTextCodec(setup.folder / params.get(MODEL_DIR_PARAMETER, MODEL_DIR))

    @guarded
    def execute(self, requests):
        texts, spans, responses = gather_texts(requests, TEXT)
        if texts:
            prepared = self.codec.prepare(texts)
            ids, mask = self.codec.encode([head for head, _ in prepared])  # one call for the Triton batch
            for i, start, stop in spans:
                width = max(int(mask[start:stop].sum(axis=1).max()), 1)
                tails = np.array([[tail.encode()] for _, tail in prepared[start:stop]], dtype=np.object_)
                sources = np.array([[head.encode()] for head, _ in prepared[start:stop]], dtype=np.object_)
                responses[i] = respond(
                    {
                        INPUT_IDS: ids[start:stop, :width],
                        ATTENTION_MASK: mask[start:stop, :width],
                        TAIL: tails,
                        SOURCE: sources,
                    },
                    self.dtypes,
                )
        return responses
