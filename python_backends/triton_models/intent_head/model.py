"""Triton adapter: pooled query embedding -> intent label, class probabilities and top-k labels
(search_backends.heads.IntentHead)."""

from __future__ import annotations

from search_backends.contracts.product_search import POOLED_EMBEDDING, TOP_K
from search_backends.heads import IntentHead
from search_backends.request_rows import concat_rows
from search_backends.text_input import InputError
from triton_helpers import guarded, input_error_response, model_setup, respond, tensor_or_none


class TritonPythonModel:
    def initialize(self, args):
        setup = model_setup(args)
        self.dtypes = setup.dtypes
        self.head = IntentHead.from_parameters(setup.folder, setup.params)

    @guarded
    def execute(self, requests):
        embeddings, kept, responses = [], [], [None] * len(requests)
        for i, request in enumerate(requests):
            try:
                k = self.head.top_k(tensor_or_none(request, TOP_K))
            except InputError as exc:
                responses[i] = input_error_response(str(exc))
                continue
            embeddings.append(tensor_or_none(request, POOLED_EMBEDDING))
            kept.append((i, k))
        if embeddings:
            pooled, ranges = concat_rows(embeddings)
            predictions = self.head.predict(pooled, [(a, b, k) for (a, b), (_, k) in zip(ranges, kept)])
            for (i, _), prediction in zip(kept, predictions):
                responses[i] = respond(prediction.outputs(), self.dtypes)
        return responses
