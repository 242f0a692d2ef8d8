"""Triton adapter: run an exported ONNX graph in-process (the local target's engine): ONNX Runtime or
OpenVINO at the precision the build chose (``engine`` / ``precision`` parameters).

Requests of different sequence lengths are batched together (allow_ragged_batch) and padded
once here, so the graph runs once per Triton batch.
"""

from __future__ import annotations

from search_backends.batch_runner import BatchRunner
from search_backends.engine_inputs import EngineInputRules
from search_backends.graph_engines import engine_from_parameters
from search_backends.text_input import InputError
from triton_helpers import engine_threads, guarded, input_error_response, model_setup, respond, tensor_or_none


class TritonPythonModel:
    def initialize(self, args):
        setup = model_setup(args)
        params = setup.params
        self.dtypes = setup.dtypes
        engine = engine_from_parameters(setup.folder, params, threads=engine_threads(setup.config))
        self.runner = BatchRunner(engine)
        self.rules = EngineInputRules.from_parameters(params)

    @guarded
    def execute(self, requests):
        feeds, index, responses = [], [], [None] * len(requests)
        for i, request in enumerate(requests):
            try:  # a direct caller's bad row must not fail the batch it joins
                feeds.append(
                    self.rules.request_feed({name: tensor_or_none(request, name) for name in self.runner.input_names})
                )
                index.append(i)
            except InputError as exc:
                responses[i] = input_error_response(str(exc))
        for i, outputs in zip(index, self.runner.run(feeds)):
            responses[i] = respond(outputs, self.dtypes)
        return responses
