"""Triton adapter: BYTES text -> token ids for an encoder (logic in search_backends.tokenization)."""
from __future__ import annotations

import numpy as np

from search_backends.model_parameters import int_parameter
from search_backends.text_input import InputError, decode_text
from search_backends.tokenization import BatchTokenizer
from triton_helpers import input_error_response, guarded, model_config, output_dtypes, parameters, respond, tensor_or_none, version_dir


class TritonPythonModel:
    def initialize(self, args):
        config = model_config(args)
        params = parameters(config)
        self.text_input = params.get("text_input", "TEXT")
        self.dtypes = output_dtypes(config)
        self.tokenizer = BatchTokenizer(version_dir(args) / params.get("tokenizer_dir", "tokenizer"),
                                        max_length=int_parameter(params, "max_length", 128, minimum=2),
                                        pad_to_multiple_of=int_parameter(params, "pad_to_multiple_of", 8, minimum=1))

    @guarded
    def execute(self, requests):
        responses = [None] * len(requests)
        texts, spans = [], []
        for i, request in enumerate(requests):
            values = tensor_or_none(request, self.text_input)
            try:
                if values is None or values.size == 0:
                    raise InputError(f"{self.text_input}: missing input")
                decoded = [decode_text(v, field=self.text_input) for v in values.reshape(-1)]
            except InputError as exc:
                responses[i] = input_error_response(str(exc))
                continue
            spans.append((i, len(texts), len(texts) + len(decoded)))
            texts.extend(decoded)
        if texts:
            batch = self.tokenizer.encode(texts)  # one call for the whole Triton batch
            for i, start, stop in spans:
                width = max(self.tokenizer.padded_length(batch, r) for r in range(start, stop))
                rows = batch.rows(start, stop, width)
                responses[i] = respond({"input_ids": rows.input_ids, "attention_mask": rows.attention_mask,
                                        **({"token_type_ids": rows.token_type_ids} if "token_type_ids" in self.dtypes else {})},
                                       self.dtypes)
        return responses
