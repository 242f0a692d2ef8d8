"""Triton adapter: pooled pair embedding -> duplicate probability (search_backends.heads.DuplicateHead)."""

from __future__ import annotations

from search_backends.contracts.product_search import POOLED_EMBEDDING, SCORE
from search_backends.heads import DuplicateHead
from search_backends.request_rows import concat_rows
from triton_helpers import guarded, model_setup, respond, tensor_or_none


class TritonPythonModel:
    def initialize(self, args):
        setup = model_setup(args)
        self.dtypes = setup.dtypes
        self.head = DuplicateHead.from_parameters(setup.folder, setup.params)

    @guarded
    def execute(self, requests):
        pooled, ranges = concat_rows([tensor_or_none(r, POOLED_EMBEDDING) for r in requests])
        scores = self.head.predict(pooled)  # one head call for the Triton batch
        return [respond({SCORE: scores[start:stop]}, self.dtypes) for start, stop in ranges]
