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

from search_backends.contracts.product_search import TOP_K
from search_backends.contracts.query_embedding import TEXT, TEXT_INPUT_PARAMETER
from search_backends.text_encoding import TextEncoder
from search_backends.text_input import InputError
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
        self.text_input = setup.params.get(TEXT_INPUT_PARAMETER, TEXT)
        self.dtypes = setup.dtypes
        self.encoder = TextEncoder.from_parameters(setup.folder, setup.params, threads=engine_threads(setup.config))
        self.outputs = [name for name in self.encoder.engine.output_names if name in self.dtypes]
        self.admission = admission_queue(setup, self._compute, self._warm_up_payload)

    def _warm_up_payload(self, rows: int):
        return [(["warm up query"] * rows, None if self.encoder.head is None else self.encoder.head.top_k(None))]

    @guarded
    def execute(self, requests):
        texts, spans, responses = gather_texts(requests, self.text_input)
        top_ks = [None] * len(spans)
        if self.encoder.head is not None:
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
        return self.encoder.compute(payloads, self.outputs)

    def _with_top_k(self, requests, spans, responses):
        """The spans whose TOP_K is valid, and their k; the others get their error response."""
        kept, top_ks = [], []
        for i, start, stop in spans:
            try:
                top_ks.append(self.encoder.head.top_k(tensor_or_none(requests[i], TOP_K)))
                kept.append((i, start, stop))
            except InputError as exc:
                responses[i] = input_error_response(str(exc))
        return kept, top_ks
