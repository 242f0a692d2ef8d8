"""Triton adapter: run an exported ONNX graph in-process (the local target's engine): ONNX Runtime or
OpenVINO at the precision the build chose (``engine`` / ``precision`` parameters).

Requests of different sequence lengths are batched together (allow_ragged_batch) and padded
once here, so the graph runs once per Triton batch.
"""
from __future__ import annotations

from search_backends.engine_inputs import EngineInputRules
from search_backends.model_parameters import int_map_parameter, list_parameter
from search_backends.batch_runner import BatchRunner
from search_backends.graph_engines import (ENGINE_ONNXRUNTIME, ENGINE_PARAMETER, GRAPH_FILE_PARAMETER,
                                           PRECISION_PARAMETER, open_engine)
from search_backends.text_input import InputError
from triton_helpers import input_error_response, engine_threads, guarded, model_config, output_dtypes, parameters, respond, tensor_or_none, version_dir


class TritonPythonModel:
    def initialize(self, args):
        config = model_config(args)
        params = parameters(config)
        self.inputs = {i["name"]: i for i in config["input"]}
        self.dtypes = output_dtypes(config)
        engine = open_engine(params.get(ENGINE_PARAMETER, ENGINE_ONNXRUNTIME),
                             version_dir(args) / params.get(GRAPH_FILE_PARAMETER, "model.onnx"),
                             threads=engine_threads(config), precision=params.get(PRECISION_PARAMETER, "fp32"))
        self.runner = BatchRunner(engine, pad_values=int_map_parameter(params, "pad_values"),
                                  sequence_outputs=list_parameter(params, "sequence_outputs"))
        self.rules = EngineInputRules.from_parameters(params)

    @guarded
    def execute(self, requests):
        feeds, index, responses = [], [], [None] * len(requests)
        for i, request in enumerate(requests):
            feed = {}
            for name in self.runner.input_names:
                value = tensor_or_none(request, name)
                if value is None:
                    responses[i] = input_error_response(f"{name}: missing input")
                    break
                feed[name] = value
            else:
                try:
                    self.rules.check(feed)  # a direct caller's bad row must not fail the batch it joins
                except InputError as exc:
                    responses[i] = input_error_response(str(exc))
                    continue
                feeds.append(feed)
                index.append(i)
        for i, outputs in zip(index, self.runner.run(feeds)):
            responses[i] = respond(outputs, self.dtypes)
        return responses
