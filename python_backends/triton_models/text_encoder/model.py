"""Triton adapter: BYTES text -> an encoder graph's outputs in one stub (the local target's fused engine).

Tokenization (search_backends.tokenization) and the engine (search_backends.graph_engines) run in one call for
the whole Triton batch; each request gets its rows back. Text checks are those of the tokenizer stub. With a
``head_file`` parameter the intent head (search_backends.heads.IntentHead) runs on the pooled output in the same
call, and the request's optional TOP_K applies.

With a ``shed_wait_ms`` parameter the stage sheds load (search_backends.admission): ``execute`` queues the
requests and returns, a worker thread runs the queue in batches, and a request that would wait longer than the
budget is answered UNAVAILABLE at once.
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
from search_backends.request_rows import flatten_rows
from search_backends.text_input import InputError
from search_backends.tokenization import BatchTokenizer
from triton_helpers import (
    admission_queue,
    engine_threads,
    gather_texts,
    guarded,
    input_error_response,
    model_setup,
    respond,
    respond_admitted,
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
        self.admission = admission_queue(setup, self._compute, self._warm_up_payload)

    def _warm_up_payload(self, rows: int):
        return [(["warm up query"] * rows, None if self.head is None else self.head.top_k(None))]

    @guarded
    def execute(self, requests):
        texts, spans, responses = gather_texts(requests, self.text_input)
        top_ks = [None] * len(spans)
        if self.head is not None:
            spans, top_ks = self._with_top_k(requests, spans, responses)
        kept = [(i, (texts[start:stop], k), stop - start) for (i, start, stop), k in zip(spans, top_ks)]
        if self.admission is not None:
            return respond_admitted(self, requests, responses, kept, self.admission, self._respond)
        for (i, *_), outputs in zip(kept, self._compute([payload for _, payload, _ in kept])):
            responses[i] = self._respond(outputs)
        return responses

    def finalize(self):
        if self.admission is not None:
            self.admission.close()

    def _respond(self, outputs):
        return respond(outputs, self.dtypes)

    def _compute(self, payloads):
        """One tokenizer call and one engine call (and one head call) for the requests' ``(texts, top_k)``; each
        request's outputs by name."""
        rows, ranges = flatten_rows([texts for texts, _ in payloads])
        if not rows:
            return []
        batch = self.tokenizer.encode(rows)
        feeds = {name: getattr(batch, name) for name in self.engine.input_names}
        outputs = dict(zip(self.engine.output_names, self.engine.infer(feeds)))
        if self.head is None:
            return [{name: outputs[name][a:b] for name in self.outputs} for a, b in ranges]
        pooled = outputs[self.engine.output_names[0]]
        predictions = self.head.predict(pooled, [(a, b, k) for (a, b), (_, k) in zip(ranges, payloads)])
        return [prediction.outputs() for prediction in predictions]

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
