"""Triton adapter: TEXT -> corrected text, intent and catalog results in one request.

The stage logic is ``search_backends.search_bar``. With ``stages: bls`` this file turns each stage into one BLS
call (async); with ``stages: inprocess`` (the local target) it runs the stage models' own files and settings in
this stub (``search_backends.search_bar.in_process_stages``), read from their folders in the same repository.
In-process, a ``shed_wait_ms`` parameter turns on load shedding (search_backends.admission): ``execute`` queues
the requests and returns, a worker thread runs them in batches, and a request that could not be answered within
the budget gets UNAVAILABLE at once.
"""

from __future__ import annotations

import asyncio

import numpy as np
import triton_python_backend_utils as pb_utils

from search_backends.contracts import search_bar as C
from search_backends.model_parameters import int_parameter
from search_backends.admission import CONTENT_SPREAD_MARGIN, SHED_WAIT_PARAMETER
from search_backends.search_bar import SearchBarRequest, Stages, in_process_stages, parse_request, run_search_bar
from search_backends.text_input import InputError
from triton_helpers import (
    admission_queue,
    engine_threads,
    guarded_async,
    input_error_response,
    internal_error_response,
    model_setup,
    respond,
    respond_admitted,
    sibling_model,
    tensor_or_none,
    utf8,
)

_text = np.vectorize(lambda b: b.decode("utf-8") if isinstance(b, bytes) else str(b), otypes=[np.object_])


class StageError(RuntimeError):
    def __init__(self, model: str, message: str, code):
        super().__init__(f"{model}: {message}")
        self.code = code


# What the admission queue times a batch on: typical search-bar queries, most with a typo somewhere.
WARM_UP_QUERIES = (
    "metalica enter sandman",
    "tayler swift love story",
    "lofi hip hop beets to study",
    "bohemain rapsody queen",
    "jazz pianno for sleep",
    "ed sheren perfect",
    "wireless headphones",
    "sza kil bill",
)


def _strings(name: str, texts: list[str]) -> "pb_utils.Tensor":
    return pb_utils.Tensor(name, np.array([[t.encode("utf-8")] for t in texts], dtype=np.object_))


class TritonPythonModel:
    def initialize(self, args):
        setup = model_setup(args)
        self.dtypes = setup.dtypes
        classes = next(int(o["dims"][0]) for o in setup.config["output"] if o["name"] == C.INTENT_PROBABILITIES)
        self.spell_beams = int_parameter(setup.params, C.PARAM_SPELL_NUM_BEAMS, 0, minimum=0, maximum=16)
        mode = setup.params.get(C.PARAM_STAGES, C.STAGES_BLS)
        if mode not in C.STAGE_MODES:
            raise ValueError(f"{C.PARAM_STAGES} must be one of {', '.join(C.STAGE_MODES)}, got {mode!r}")
        if mode == C.STAGES_INPROCESS:
            self.stages = self._in_process(setup)
        else:
            self.stages = Stages(self._spell, self._intent, self._embed, self._search, classes)
        if self.stages.intent_classes != classes:
            raise ValueError(
                f"{C.INTENT_PROBABILITIES} has {classes} columns but the intent head {self.stages.intent_classes}"
            )
        # Load shedding (shed_wait_ms) needs the stages in this process: the admission queue prices a batch by
        # timing it, which BLS stages (queued in other models) would make meaningless, so it is refused before
        # anything is timed.
        if mode != C.STAGES_INPROCESS and int_parameter(setup.params, SHED_WAIT_PARAMETER, 0, minimum=0):
            raise ValueError(f"{SHED_WAIT_PARAMETER} needs {C.PARAM_STAGES}={C.STAGES_INPROCESS!r}, got {mode!r}")
        self.admission = admission_queue(
            setup, self._compute, self._warm_up_payload, spread_margin=CONTENT_SPREAD_MARGIN
        )

    def _compute(self, payloads):
        """Every request's outcome (outputs or the exception it alone raised) for the requests of one batch; the
        admission queue's worker calls it from its own thread."""
        return asyncio.run(run_search_bar(payloads, self.stages))

    def _warm_up_payload(self, rows: int):
        # Misspelled queries: the guard's repair, whose cost depends on the words, is priced as it will run.
        return [SearchBarRequest([WARM_UP_QUERIES[i % len(WARM_UP_QUERIES)] for i in range(rows)])]

    def _in_process(self, setup) -> Stages:
        from search_backends.catalog_index import open_catalog
        from search_backends.contracts.spell_correct import INFLIGHT_PARAMETER, MODEL_DIR, MODEL_DIR_PARAMETER
        from search_backends.spell_corrector import SpellStage
        from search_backends.text_encoding import TextEncoder

        threads = engine_threads(setup.config)
        spell_dir, spell_params = sibling_model(setup, setup.params[C.PARAM_SPELL_MODEL])
        spell_params.pop(INFLIGHT_PARAMETER, None)  # each search-bar batch decodes to the end
        self.spell = SpellStage.from_parameters(
            spell_dir / spell_params.get(MODEL_DIR_PARAMETER, MODEL_DIR), spell_params, threads=threads
        )
        beams = {"num_beams": self.spell_beams} if self.spell_beams else {}
        intent_dir, intent_params = sibling_model(setup, setup.params[C.PARAM_INTENT_MODEL])
        embedding_dir, embedding_params = sibling_model(setup, setup.params[C.PARAM_EMBEDDING_MODEL])
        catalog_dir, catalog_params = sibling_model(setup, setup.params[C.PARAM_CATALOG_MODEL])
        return in_process_stages(
            self.spell,
            self.spell.decoding.request_params({}, beams),
            TextEncoder.from_parameters(intent_dir, intent_params, threads=threads),
            TextEncoder.from_parameters(embedding_dir, embedding_params, threads=threads),
            open_catalog(catalog_dir / catalog_params.get(C.PARAM_CATALOG_DIR, C.CATALOG_DIR), threads=threads),
        )

    async def _call(self, model: str, inputs: list, outputs: list[str]) -> dict[str, np.ndarray]:
        response = await pb_utils.InferenceRequest(
            model_name=model, inputs=inputs, requested_output_names=outputs
        ).async_exec()
        if response.has_error():
            error = response.error()
            raise StageError(model, error.message(), error.code() if hasattr(error, "code") else None)
        return {name: pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in outputs}

    async def _spell(self, texts: list[str]) -> list[str]:
        inputs = [_strings(C.SPELL_INPUT, texts)]
        if self.spell_beams:
            inputs.append(pb_utils.Tensor(C.SPELL_NUM_BEAMS, np.full((len(texts), 1), self.spell_beams, np.int32)))
        out = await self._call(C.SPELL_ENTRY, inputs, [C.SPELL_OUTPUT])
        return _text(out[C.SPELL_OUTPUT].reshape(-1)).tolist()

    async def _intent(self, texts: list[str]):
        out = await self._call(C.INTENT_ENTRY, [_strings(C.INTENT_INPUT, texts)], [C.INTENT_LABEL, C.INTENT_PROBS])
        return _text(out[C.INTENT_LABEL].reshape(-1)).tolist(), out[C.INTENT_PROBS]

    async def _embed(self, texts: list[str]) -> np.ndarray:
        out = await self._call(C.EMBEDDING_ENTRY, [_strings(C.EMBEDDING_INPUT, texts)], [C.EMBEDDING_OUTPUT])
        return out[C.EMBEDDING_OUTPUT]

    async def _search(self, vectors: np.ndarray, k: int) -> dict[str, np.ndarray]:
        names = [C.ITEM_IDS, C.ITEM_TITLES, C.ITEM_FIELDS, C.SCORES]
        out = await self._call(
            C.CATALOG_SEARCH,
            [
                pb_utils.Tensor(C.EMBEDDING, np.ascontiguousarray(vectors, np.float32)),
                pb_utils.Tensor(C.TOP_K, np.full((len(vectors), 1), k, np.int32)),
            ],
            names,
        )
        return {name: (_text(v) if v.dtype == np.object_ else v) for name, v in out.items()}

    @guarded_async
    async def execute(self, requests):
        responses, parsed, owners = [None] * len(requests), [], []
        for i, request in enumerate(requests):
            try:
                parsed.append(
                    parse_request(
                        tensor_or_none(request, C.TEXT),
                        tensor_or_none(request, C.TOP_K),
                        tensor_or_none(request, C.CORRECT_SPELLING),
                        tensor_or_none(request, C.DETECT_INTENT),
                    )
                )
                owners.append(i)
            except InputError as exc:
                responses[i] = input_error_response(str(exc))
        if self.admission is not None:  # answered through the response senders; the excess at once
            kept = [(i, request, len(request.texts)) for i, request in zip(owners, parsed)]
            return respond_admitted(self, requests, responses, kept, self.admission, self._respond)
        for i, outcome in zip(owners, await run_search_bar(parsed, self.stages)):
            responses[i] = self._respond(outcome)
        return responses

    def _respond(self, outcome):
        """One request's response: its outputs, or the error its stages raised for it."""
        invalid_arg = getattr(pb_utils.TritonError, "INVALID_ARG", None)  # not defined at import time
        if isinstance(outcome, StageError) and invalid_arg is not None and outcome.code == invalid_arg:
            return input_error_response(str(outcome))  # the stage's message names the field
        if isinstance(outcome, InputError):  # an in-process stage refused the request's input
            return input_error_response(str(outcome))
        if isinstance(outcome, Exception):
            return internal_error_response(self, outcome)
        return respond({name: (utf8(v) if v.dtype == object else v) for name, v in outcome.items()}, self.dtypes)

    def finalize(self):
        if getattr(self, "admission", None) is not None:
            self.admission.close()
        spell = getattr(self, "spell", None)
        if spell is not None:
            spell.close()
