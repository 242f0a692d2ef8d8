"""Triton adapter: pooled query embedding -> intent label, class probabilities and top-k labels."""
from __future__ import annotations

import json

import numpy as np

from search_backends.heads import classify
from search_backends.model_parameters import int_parameter
from search_backends.onnx_runner import make_session
from triton_helpers import utf8, guarded, input_error_response, model_config, output_dtypes, parameters, respond, tensor_or_none, version_dir


class TritonPythonModel:
    def initialize(self, args):
        config = model_config(args)
        params = parameters(config)
        self.dtypes = output_dtypes(config)
        folder = version_dir(args)
        self.session = make_session(folder / params.get("head_file", "head.onnx"), intra_op_threads=1)
        self.input_name = self.session.get_inputs()[0].name
        self.id2label = json.loads((folder / params.get("labels_file", "labels.json")).read_text())
        self.default_top_k = int_parameter(params, "top_k", 3, minimum=1, maximum=len(self.id2label))

    @guarded
    def execute(self, requests):
        embeddings, spans, responses = [], [], [None] * len(requests)
        for i, request in enumerate(requests):
            top_k = tensor_or_none(request, "TOP_K")
            k = self.default_top_k if top_k is None else int(top_k.reshape(-1)[0])
            if not 1 <= k <= len(self.id2label):
                responses[i] = input_error_response(f"TOP_K must be between 1 and {len(self.id2label)}, got {k}")
                continue
            emb = tensor_or_none(request, "pooled_embedding")
            spans.append((i, sum(len(e) for e in embeddings), k))
            embeddings.append(emb)
        if embeddings:
            logits = self.session.run(None, {self.input_name: np.concatenate(embeddings).astype(np.float32)})[0]
            for (i, start, k), emb in zip(spans, embeddings):
                pred = classify(logits[start:start + len(emb)], self.id2label, top_k=k)
                responses[i] = respond({"LABEL": utf8(pred.labels).reshape(-1, 1),
                                        "PROBABILITIES": pred.probabilities,
                                        "TOP_LABELS": utf8(pred.top_labels),
                                        "TOP_PROBABILITIES": pred.top_probabilities}, self.dtypes)
        return responses
