"""Triton adapter: BYTES text -> an encoder graph's outputs in one stub (the local target's fused engine).

Tokenization (search_backends.tokenization) and the engine (search_backends.graph_engines) run in one call for
the whole Triton batch; each request gets its rows back. Text checks are those of the tokenizer stub.
"""
from __future__ import annotations

from search_backends.graph_engines import (ENGINE_ONNXRUNTIME, ENGINE_PARAMETER, GRAPH_FILE_PARAMETER,
                                           PRECISION_PARAMETER, open_engine)
from search_backends.model_parameters import int_parameter
from search_backends.tokenization import BatchTokenizer
from triton_helpers import engine_threads, gather_texts, guarded, model_config, output_dtypes, parameters, respond, version_dir


class TritonPythonModel:
    def initialize(self, args):
        config = model_config(args)
        params = parameters(config)
        folder = version_dir(args)
        self.text_input = params.get("text_input", "TEXT")
        self.dtypes = output_dtypes(config)
        self.tokenizer = BatchTokenizer(folder / params.get("tokenizer_dir", "tokenizer"),
                                        max_length=int_parameter(params, "max_length", 128, minimum=2),
                                        pad_to_multiple_of=int_parameter(params, "pad_to_multiple_of", 8, minimum=1))
        self.engine = open_engine(params.get(ENGINE_PARAMETER, ENGINE_ONNXRUNTIME),
                                  folder / params.get(GRAPH_FILE_PARAMETER, "model.onnx"),
                                  threads=engine_threads(config), precision=params.get(PRECISION_PARAMETER, "fp32"))
        self.outputs = [name for name in self.engine.output_names if name in self.dtypes]

    @guarded
    def execute(self, requests):
        texts, spans, responses = gather_texts(requests, self.text_input)
        if texts:
            batch = self.tokenizer.encode(texts)  # one tokenizer call and one engine call for the Triton batch
            feeds = {name: getattr(batch, name) for name in self.engine.input_names}
            outputs = dict(zip(self.engine.output_names, self.engine.infer(feeds)))
            for i, start, stop in spans:
                responses[i] = respond({name: outputs[name][start:stop] for name in self.outputs}, self.dtypes)
        return responses
