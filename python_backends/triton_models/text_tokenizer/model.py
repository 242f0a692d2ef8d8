"""Triton adapter: BYTES text -> token ids for an encoder (logic in search_backends.tokenization)."""
from __future__ import annotations

from search_backends.model_parameters import int_parameter
from search_backends.tokenization import BatchTokenizer
from triton_helpers import gather_texts, guarded, model_config, output_dtypes, parameters, respond, version_dir


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
        texts, spans, responses = gather_texts(requests, self.text_input)
        if texts:
            batch = self.tokenizer.encode(texts)  # one call for the whole Triton batch
            for i, start, stop in spans:
                width = max(self.tokenizer.padded_length(batch, r) for r in range(start, stop))
                rows = batch.rows(start, stop, width)
                responses[i] = respond({"input_ids": rows.input_ids, "attention_mask": rows.attention_mask,
                                        **({"token_type_ids": rows.token_type_ids} if "token_type_ids" in self.dtypes else {})},
                                       self.dtypes)
        return responses
