"""Triton adapter: query text -> corrected text in one stub (the CPU targets' spell stage, engine in-process).

Tokenization, decoding and detokenization with the no-damage guard run for the whole Triton batch in one call
(search_backends.spell_corrector.correct_batch), with each request's decoding controls and guard switch. The
same work as the tokenize -> generate -> detokenize ensemble, without two Python hops and their copies. With
in-flight batching on (loop engines) each request joins the running decoding and is answered on its own
(submit_corrections). With a ``shed_wait_ms`` parameter (CTranslate2 mode) the stage sheds load
(search_backends.admission): a request is priced by its decoder rows (texts x num_beams), so the queue holds a
bounded amount of decoding work, and a request that could not be answered within the budget gets UNAVAILABLE.
"""

from __future__ import annotations

import json

import numpy as np

from search_backends.contracts.spell_correct import (
    CONTROL_INPUTS,
    CORRECTED,
    GUARD_INPUT,
    MODEL_DIR,
    MODEL_DIR_PARAMETER,
    TEXT,
)
from search_backends.request_rows import pack_spans
from search_backends.spell_corrector import SpellStage, submit_corrections
from search_backends.spell_guard import guard_switch
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
    respond_in_flight,
    tensor_or_none,
    utf8,
)


class TritonPythonModel:
    def initialize(self, args):
        setup = model_setup(args)
        params = setup.params
        self.dtypes = setup.dtypes
        model_dir = setup.folder / params.get(MODEL_DIR_PARAMETER, MODEL_DIR)
        self.stage = SpellStage.from_parameters(model_dir, params, threads=engine_threads(setup.config))
        self.admission = None
        if self.stage.decoding.inflight is None:  # the in-flight decoder bounds its own rows (inflight_max_rows)
            # Cost units are decoder rows (texts x num_beams): a batch holds up to max_batch_size texts at 8 beams.
            max_rows = self.stage.decoding.limits.max_num_beams * int(setup.config.get("max_batch_size", 1))
            self.admission = admission_queue(setup, self._compute, self._warm_up_payload, max_rows)

    def _warm_up_payload(self, rows: int):
        params = self.stage.decoding.request_params({}, {"num_beams": 1})  # greedy: one text is one decoder row
        return [(["warm up query"] * rows, [params] * rows, [True] * rows)]

    @guarded
    def execute(self, requests):
        texts, spans, responses = gather_texts(requests, TEXT)
        row_params, switches, kept = [], [], []
        for i, start, stop in spans:
            request = requests[i]
            try:
                request_parameters = json.loads(request.parameters() or "{}")
                params = self.stage.decoding.request_params(
                    {name: tensor_or_none(request, name) for name in CONTROL_INPUTS}, request_parameters
                )
                switch = guard_switch(tensor_or_none(request, GUARD_INPUT), request_parameters)
            except InputError as exc:
                responses[i] = input_error_response(str(exc))
                continue
            kept.append((i, start, stop))
            row_params += [params] * (stop - start)
            switches += [switch] * (stop - start)
        rows, ranges = pack_spans(texts, [(start, stop) for _, start, stop in kept])
        if self.stage.decoding.inflight is not None:  # each request answered as soon as its own rows are final

            def submit(answers):
                submit_corrections(
                    self.stage.codec,
                    self.stage.decoding.inflight,
                    self.stage.guard,
                    rows,
                    ranges,
                    row_params,
                    switches,
                    answers,
                )

            return respond_in_flight(self, requests, responses, [i for i, *_ in kept], submit, self._respond)
        payloads = [(rows[a:b], row_params[a:b], switches[a:b]) for a, b in ranges]
        if self.admission is not None:  # priced by decoder rows: a beam-8 text costs what 8 greedy ones do
            work = [(i, payload, sum(p.num_beams for p in payload[1])) for (i, *_), payload in zip(kept, payloads)]
            return respond_admitted(self, requests, responses, work, self.admission, self._respond)
        for (i, *_), corrected in zip(kept, self._compute(payloads)):
            responses[i] = self._respond(corrected)
        return responses

    def _compute(self, payloads):
        """Each request's corrected texts for the requests' ``(texts, row params, guard switches)``."""
        return self.stage.correct(payloads)

    def _respond(self, corrected):
        return respond({CORRECTED: utf8(np.array(corrected)).reshape(len(corrected), 1)}, self.dtypes)

    def finalize(self):
        if self.admission is not None:
            self.admission.close()
        self.stage.close()
