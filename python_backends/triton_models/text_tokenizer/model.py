"""Triton adapter: BYTES text -> token ids for an encoder (logic in search_backends.tokenization)."""

from __future__ import annotations

from search_backends.contracts.product_search import IDS
from search_backends.contracts.query_embedding import TEXT, TEXT_INPUT_PARAMETER
from search_backends.tokenization import BatchTokenizer
from triton_helpers import gather_texts, guarded, model_setup, respond


class TritonPythonModel:
    def initialize(self, args):
        setup = model_setup(args)
        params = setup.params
        self.text_input = params.get(TEXT_INPUT_PARAMETER, TEXT)
        self.dtypes = setup.dtypes
        self.outputs = [name for name in IDS if name in self.dtypes]  # token_type_ids only where the encoder takes them
        self.tokenizer = BatchTokenizer.from_parameters(setup.folder, params)

    @guarded
    def execute(self, requests):
        texts, spans, responses = gather_texts(requests, self.text_input)
        if texts:
            batch = self.tokenizer.encode(texts)  # one call for the whole Triton batch
            for i, start, stop in spans:
                rows = batch.request_rows(start, stop, self.tokenizer.pad_to_multiple_of)
                responses[i] = respond({name: getattr(rows, name) for name in self.outputs}, self.dtypes)
        return responses
