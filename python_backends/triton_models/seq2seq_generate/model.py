"""Triton adapter: batched greedy / beam search for an encoder-decoder (search_backends.spell_generation).

All requests of a Triton batch are decoded together: one decoder call per step for every live
sequence of every request. ``engine_mode`` picks the engine (search_backends.spell_decoding):
  ctranslate2: CTranslate2 in this model, exact loop for what it cannot match (the CPU targets' default),
  inprocess:   ONNX Runtime sessions inside this model,
  bls:         the ``encoder_model`` / ``decoder_model`` Triton models (TensorRT engines on triton-gpu).
"""
from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from search_backends.engine_inputs import EngineInputRules
from search_backends.generation_controls import CONTROL_INPUTS, ControlLimits, parse_controls
from search_backends.spell_contract import (ATTENTION_MASK, CT2_COMPUTE_TYPE_PARAMETER, CT2_DEVICE_PARAMETER,
                                             ENGINE_BLS, ENGINE_MODE_PARAMETER, INPUT_IDS, OUTPUT_IDS, GraphNames)
from search_backends.spell_decoding import SpellDecoder, pad_rows, request_rows_error
from search_backends.spell_generation import GenerationDefaults
from search_backends.text_input import InputError
from triton_helpers import input_error_response, engine_threads, guarded, model_config, output_dtypes, parameters, respond, tensor_or_none, version_dir


class BlsEngines:
    """encode / decode_step callables that call other Triton models."""

    def __init__(self, encoder_model: str, decoder_model: str, num_layers: int):
        self.encoder_model, self.decoder_model = encoder_model, decoder_model
        self.names = GraphNames(num_layers)

    def _call(self, model, inputs, outputs):
        request = pb_utils.InferenceRequest(model_name=model, inputs=[pb_utils.Tensor(k, np.ascontiguousarray(v))
                                                                     for k, v in inputs.items()],
                                            requested_output_names=outputs)
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"{model}: {response.error().message()}")
        return [pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in outputs]

    def encode(self, input_ids, attention_mask):
        return self._call(self.encoder_model, dict(zip(self.names.encoder_inputs(), (input_ids, attention_mask))),
                          self.names.cross())

    def decode_step(self, decoder_input_ids, encoder_attention_mask, past, cross):
        inputs = dict(zip(self.names.decoder_inputs(), (decoder_input_ids, encoder_attention_mask, *past, *cross)))
        logits, *present = self._call(self.decoder_model, inputs, self.names.decoder_outputs())
        return logits, present


class TritonPythonModel:
    def initialize(self, args):
        config = model_config(args)
        params = parameters(config)
        self.dtypes = output_dtypes(config)
        model_dir = version_dir(args) / params.get("model_dir", "spell_model")
        self.defaults = GenerationDefaults.from_model_dir(model_dir)
        model_cfg = json.loads((model_dir / "config.json").read_text())
        self.pad_id = int(model_cfg.get("pad_token_id") or 0)
        # A direct caller's ids must fit the vocabulary and the model's positions (spell_tokenize's never exceed them).
        self.rules = EngineInputRules(int(model_cfg["max_position_embeddings"]),
                                      {INPUT_IDS: (0, int(model_cfg["vocab_size"])), ATTENTION_MASK: (0, 2)})
        self.limits = ControlLimits(max_num_beams=int(params.get("max_num_beams", 8)),
                                    max_new_tokens=int(params.get("max_new_tokens_limit", 64)))
        mode = params[ENGINE_MODE_PARAMETER]
        engines = None
        if mode == ENGINE_BLS:
            engines = BlsEngines(params["encoder_model"], params["decoder_model"], int(model_cfg["decoder_layers"]))
        self.decoder = SpellDecoder(mode, model_dir, threads=engine_threads(config), engines=engines,
                                    compute_type=params.get(CT2_COMPUTE_TYPE_PARAMETER, "default"),
                                    device=params.get(CT2_DEVICE_PARAMETER, "cpu"))

    def _request_params(self, request):
        inputs = {name: tensor_or_none(request, name) for name in CONTROL_INPUTS}
        request_parameters = json.loads(request.parameters() or "{}")
        overrides = parse_controls(inputs, request_parameters, self.limits)
        try:
            resolved = self.defaults.resolve(**overrides)
            self.decoder.check(resolved)
            return resolved
        except ValueError as exc:
            raise InputError(str(exc)) from None

    @guarded
    def execute(self, requests):
        responses = [None] * len(requests)
        ids_rows, mask_rows, row_params, spans = [], [], [], []
        for i, request in enumerate(requests):
            try:
                params = self._request_params(request)
            except InputError as exc:
                responses[i] = input_error_response(str(exc))
                continue
            ids = tensor_or_none(request, INPUT_IDS).astype(np.int64)
            mask = tensor_or_none(request, ATTENTION_MASK).astype(np.int64)
            problem = request_rows_error(ids, mask)
            if problem:
                responses[i] = input_error_response(problem)
                continue
            try:
                self.rules.check({INPUT_IDS: ids, ATTENTION_MASK: mask})
            except InputError as exc:
                responses[i] = input_error_response(str(exc))
                continue
            spans.append((i, len(ids_rows), len(ids_rows) + len(ids)))
            ids_rows.extend(ids)
            mask_rows.extend(mask)
            row_params.extend([params] * len(ids))
        if ids_rows:  # every request of the batch in one decoding call
            outputs = self.decoder.decode(pad_rows(ids_rows, self.pad_id), pad_rows(mask_rows, 0), row_params)
            for i, start, stop in spans:
                responses[i] = respond({OUTPUT_IDS: pad_rows(outputs[start:stop], self.pad_id)}, self.dtypes)
        return responses
