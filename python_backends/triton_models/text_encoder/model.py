"""Triton adapter: BYTES text -> an encoder graph's outputs in one stub (the local target's fused engine).

Tokenization (search_backends.tokenization) and the engine (search_backends.graph_engines) run in one call for
the whole Triton batch; each request gets its rows back. Text checks are those of the tokenizer stub. With a
``head_file`` parameter the intent head (search_backends.heads.IntentHead) runs on the pooled output in the same
call, and the request's optional TOP_K applies.
"""

from __future__ import annotations

from search_backends.contracts.product_search import HEAD_FILE_PARAMETER, TOP_K
from search_backends.contracts.query_embedding import TEXT, TEXT_INPUT_PARAMETER
from search_backends.graph_engines import (
    ENGINE_ONNXRUNTIME,
    ENGINE_PARAMETER,
    GRAPH_FILE,
    GRAPH_FILE_PARAMETER,
    PRECISION_PARAMETER,
    open_engine,
)
from search_backends.request_rows import pack_spans
from search_backends.text_input import InputError
from search_backends.tokenization import BatchTokenizer
from triton_helpers import (
    engine_threads,
    gather_texts,
    guarded,
    input_error_response,
    model_setup,
    respond,
    tensor_or_none,
)


class TritonPythonModel:
    def initialize(self, args):
        setup = model_setup(args)
        params = setup.params
        folder = setup.folder
        self.text_input = params.get(TEXT_INPUT_PARAMETER, TEXT)
        self.dtypes = setup.dtypes
        self.tokenizer = BatchTokenizer.from_parameters(folder, params)
        self.engine = open_engine(
            params.get(ENGINE_PARAMETER, ENGINE_ONNXRUNTIME),
            folder / params.get(GRAPH_FILE_PARAMETER, GRAPH_FILE),
            threads=engine_threads(setup.config),
            precision=params.get(PRECISION_PARAMETER, "fp32"),
        )
        self.outputs = [name for name in self.engine.output_names if name in self.dtypes]
        self.head = None
        if params.get(HEAD_FILE_PARAMETER):
            from search_backends.heads import IntentHead

            self.head = IntentHead.from_parameters(folder, params)

    @guarded
    def execute(self, requests):
        texts, spans, responses = gather_texts(requests, self.text_input)
        top_ks = None
        if self.head is not None:
            spans, top_ks = self._with_top_k(requests, spans, responses)
        rows, ranges = pack_spans(texts, [(start, stop) for _, start, stop in spans])
        if not rows:
            return responses
        batch = self.tokenizer.encode(rows)  # one tokenizer call and one engine call for the Triton batch
        feeds = {name: getattr(batch, name) for name in self.engine.input_names}
        outputs = dict(zip(self.engine.output_names, self.engine.infer(feeds)))
        if self.head is None:
            for (i, *_), (a, b) in zip(spans, ranges):
                responses[i] = respond({name: outputs[name][a:b] for name in self.outputs}, self.dtypes)
            return responses
        pooled = outputs[self.engine.output_names[0]]
        predictions = self.head.predict(pooled, [(a, b, k) for (a, b), k in zip(ranges, top_ks)])
        for (i, *_), prediction in zip(spans, predictions):
            responses[i] = respond(prediction.outputs(), self.dtypes)
        return responses

    def _with_top_k(self, requests, spans, responses):
        """The spans whose TOP_K is valid, and their k; the others get their error response."""
        kept, top_ks = [], []
        for i, start, stop in spans:
            try:
                top_ks.append(self.head.top_k(tensor_or_none(requests[i], TOP_K)))
                kept.append((i, start, stop))
            except InputError as exc:
                responses[i] = input_error_response(str(exc))
        return kept, top_ks
