"""Triton adapter: pooled query embedding -> intent label, class probabilities and top-k labels
(search_backends.heads.IntentHead)."""
from __future__ import annotations

import numpy as np

from search_backends.heads import IntentHead
from search_backends.model_parameters import int_parameter
from search_backends.text_input import InputError
from triton_helpers import guarded, input_error_response, model_config, output_dtypes, parameters, respond, tensor_or_none, version_dir


class TritonPythonModel:
    def initialize(self, args):
        config = model_config(args)
        params = parameters(config)
        self.dtypes = output_dtypes(config)
        folder = version_dir(args)
        self.head = IntentHead(folder / params.get("head_file", "head.onnx"),
                               folder / params.get("labels_file", "labels.json"),
                               int_parameter(params, "top_k", 3, minimum=1))

    @guarded
    def execute(self, requests):
        embeddings, spans, responses = [], [], [None] * len(requests)
        rows = 0
        for i, request in enumerate(requests):
            try:
                k = self.head.top_k(tensor_or_none(request, "TOP_K"))
            except InputError as exc:
                responses[i] = input_error_response(str(exc))
                continue
            emb = tensor_or_none(request, "pooled_embedding")
            spans.append((i, rows, rows + len(emb), k))
            embeddings.append(emb)
            rows += len(emb)
        if embeddings:
            predictions = self.head.predict(np.concatenate(embeddings), [(a, b, k) for _, a, b, k in spans])
            for (i, *_), prediction in zip(spans, predictions):
                responses[i] = respond(prediction.outputs(), self.dtypes)
        return responses
