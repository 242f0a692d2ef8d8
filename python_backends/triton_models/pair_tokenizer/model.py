"""Triton adapter: product pair fields -> one cross-encoder sequence (search_backends.pair_encoding)."""

from __future__ import annotations

from search_backends.contracts.product_search import (
    DEFAULT_MAX_TYPE_TOKENS,
    IDS,
    MAX_TYPE_TOKENS_PARAMETER,
    PAIR_FIELDS,
)
from search_backends.contracts.query_embedding import (
    DEFAULT_MAX_LENGTH,
    DEFAULT_PAD_TO_MULTIPLE,
    MAX_LENGTH_PARAMETER,
    PAD_TO_MULTIPLE_PARAMETER,
    TOKENIZER_DIR,
    TOKENIZER_DIR_PARAMETER,
)
from search_backends.model_parameters import int_parameter
from search_backends.pair_encoding import PairEncoder, pair_columns
from search_backends.text_input import InputError
from triton_helpers import guarded, input_error_response, model_setup, respond, tensor_or_none


class TritonPythonModel:
    def initialize(self, args):
        setup = model_setup(args)
        params = setup.params
        self.dtypes = setup.dtypes
        self.encoder = PairEncoder.from_dir(
            setup.folder / params.get(TOKENIZER_DIR_PARAMETER, TOKENIZER_DIR),
            max_length=int_parameter(params, MAX_LENGTH_PARAMETER, DEFAULT_MAX_LENGTH, minimum=8),
            pad_to_multiple_of=int_parameter(params, PAD_TO_MULTIPLE_PARAMETER, DEFAULT_PAD_TO_MULTIPLE, minimum=1),
            max_type_tokens=int_parameter(params, MAX_TYPE_TOKENS_PARAMETER, DEFAULT_MAX_TYPE_TOKENS, minimum=1),
        )

    @guarded
    def execute(self, requests):
        responses, columns, spans = [None] * len(requests), [[] for _ in PAIR_FIELDS], []
        for i, request in enumerate(requests):
            try:
                fields = pair_columns([tensor_or_none(request, name) for name in PAIR_FIELDS])
            except InputError as exc:
                responses[i] = input_error_response(str(exc))
                continue
            start = len(columns[0])
            for column, values in zip(columns, fields):
                column.extend(values)
            spans.append((i, start, len(columns[0])))
        if spans:
            batch = self.encoder.encode(*columns)  # one tokenizer call for every field of every request
            for i, start, stop in spans:
                rows = batch.request_rows(start, stop, self.encoder.pad_to_multiple_of)
                responses[i] = respond({name: getattr(rows, name) for name in IDS}, self.dtypes)
        return responses
