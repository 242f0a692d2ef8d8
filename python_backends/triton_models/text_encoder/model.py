"""Triton adapter: BYTES text -> an encoder graph's outputs in one stub (the local target's fused engine).

Tokenization (search_backends.tokenization) and the engine (search_backends.graph_engines) run in one call for
the whole Triton batch; each request gets its rows back. Text checks are those of the tokenizer stub. With a
``head_file`` parameter the intent head (search_backends.heads.IntentHead) runs on the pooled output in the same
call, and the request's optional TOP_K applies.
"""
from __future__ import annotations

from search_backends.graph_engines import (ENGINE_ONNXRUNTIME, ENGINE_PARAMETER, GRAPH_FILE_PARAMETER,
                                           PRECISION_PARAMETER, open_engine)
from search_backends.model_parameters import int_parameter
from search_backends.text_input import InputError
from search_backends.tokenization import BatchTokenizer
from triton_helpers import (engine_threads, gather_texts, guarded, input_error_response, model_config, output_dtypes,
                            parameters, respond, tensor_or_none, version_dir)


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
        self.head = None
        if params.get("head_file"):
            from search_backends.heads import IntentHead

            self.head = IntentHead(folder / params["head_file"], folder / params.get("labels_file", "labels.json"),
                                   int_parameter(params, "top_k", 3, minimum=1))

    @guarded
    def execute(self, requests):
        texts, spans, responses = gather_texts(requests, self.text_input)
        if self.head is not None:
            spans = self._with_top_k(requests, spans, responses)
        rows = [t for _, start, stop, *_ in spans for t in texts[start:stop]]
        if not rows:
            return responses
        batch = self.tokenizer.encode(rows)  # one tokenizer call and one engine call for the Triton batch
        feeds = {name: getattr(batch, name) for name in self.engine.input_names}
        outputs = dict(zip(self.engine.output_names, self.engine.infer(feeds)))
        offsets, offset = [], 0
        for _, start, stop, *_ in spans:
            offsets.append((offset, offset + stop - start))
            offset += stop - start
        if self.head is None:
            for (i, *_), (a, b) in zip(spans, offsets):
                responses[i] = respond({name: outputs[name][a:b] for name in self.outputs}, self.dtypes)
            return responses
        pooled = outputs[self.engine.output_names[0]]
        predictions = self.head.predict(pooled, [(a, b, k) for (_, _, _, k), (a, b) in zip(spans, offsets)])
        for (i, *_), prediction in zip(spans, predictions):
            responses[i] = respond(prediction.outputs(), self.dtypes)
        return responses

    def _with_top_k(self, requests, spans, responses):
        kept = []
        for i, start, stop in spans:
            try:
                kept.append((i, start, stop, self.head.top_k(tensor_or_none(requests[i], "TOP_K"))))
            except InputError as exc:
                responses[i] = input_error_response(str(exc))
        return kept
