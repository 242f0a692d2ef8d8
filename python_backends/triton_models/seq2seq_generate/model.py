"""Triton adapter: batched greedy / beam search for an encoder-decoder (search_backends.spell_generation).

All requests of a Triton batch are decoded together: one decoder call per step for every live
sequence of every request. ``engine_mode`` picks the engine (search_backends.spell_decoding):
  ctranslate2: CTranslate2 in this model, exact loop for what it cannot match (the CPU targets' default),
  inprocess:   ONNX Runtime sessions inside this model,
  bls:         the ``encoder_model`` / ``decoder_model`` Triton models (TensorRT engines on triton-gpu).
With ``inflight_batching`` (the loop engines' default) the requests join the decoding already running and each is
answered through its response sender as soon as it is final (search_backends.spell_generation.inflight).
"""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from search_backends.contracts.spell_correct import (
    ATTENTION_MASK,
    CONTROL_INPUTS,
    INPUT_IDS,
    MODEL_DIR,
    MODEL_DIR_PARAMETER,
    OUTPUT_IDS,
    GraphNames,
)
from search_backends.spell_decoding import ServedDecoding
from search_backends.text_input import InputError
from triton_helpers import (
    engine_threads,
    guarded,
    input_error_response,
    model_setup,
    respond,
    respond_in_flight,
    tensor_or_none,
)


class BlsEngines:
    """encode / decode_step callables that call other Triton models."""

    def __init__(self, encoder_model: str, decoder_model: str, num_layers: int):
        self.encoder_model, self.decoder_model = encoder_model, decoder_model
        self.names = GraphNames(num_layers)

    def _call(self, model, inputs, outputs):
        request = pb_utils.InferenceRequest(
            model_name=model,
            inputs=[pb_utils.Tensor(k, np.ascontiguousarray(v)) for k, v in inputs.items()],
            requested_output_names=outputs,
        )
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"{model}: {response.error().message()}")
        return [pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in outputs]

    def encode(self, input_ids, attention_mask):
        return self._call(
            self.encoder_model, dict(zip(self.names.encoder_inputs(), (input_ids, attention_mask))), self.names.cross()
        )

    def decode_step(self, decoder_input_ids, encoder_attention_mask, past, cross):
        inputs = dict(zip(self.names.decoder_inputs(), (decoder_input_ids, encoder_attention_mask, *past, *cross)))
        logits, *present = self._call(self.decoder_model, inputs, self.names.decoder_outputs())
        return logits, present


class TritonPythonModel:
    def initialize(self, args):
        setup = model_setup(args)
        self.dtypes = setup.dtypes
        params = setup.params
        self.decoding = ServedDecoding.from_parameters(
            setup.folder / params.get(MODEL_DIR_PARAMETER, MODEL_DIR),
            params,
            threads=engine_threads(setup.config),
            bls_engines=BlsEngines,
        )

    @guarded
    def execute(self, requests):
        responses, kept, work = [None] * len(requests), [], []
        for i, request in enumerate(requests):
            try:
                params = self.decoding.request_params(
                    {name: tensor_or_none(request, name) for name in CONTROL_INPUTS},
                    json.loads(request.parameters() or "{}"),
                )
                ids, mask = self.decoding.token_rows(
                    tensor_or_none(request, INPUT_IDS), tensor_or_none(request, ATTENTION_MASK)
                )
            except InputError as exc:
                responses[i] = input_error_response(str(exc))
                continue
            kept.append(i)
            work.append((ids, mask, params))
        if self.decoding.inflight is not None:
            submit = lambda answers: self.decoding.submit_requests(work, answers)  # noqa: E731
            return respond_in_flight(self, requests, responses, kept, submit, self._respond)
        if work:  # every request of the batch in one decoding call
            for i, output_ids in zip(kept, self.decoding.decode_requests(work)):
                responses[i] = self._respond(output_ids)
        return responses

    def _respond(self, output_ids):
        return respond({OUTPUT_IDS: output_ids}, self.dtypes)

    def finalize(self):
        self.decoding.close()
