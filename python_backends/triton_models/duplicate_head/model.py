"""Triton adapter: pooled pair embedding -> duplicate probability."""
from __future__ import annotations

import numpy as np

from search_backends.heads import duplicate_probability
from search_backends.onnx_runner import make_session
from triton_helpers import guarded, model_config, output_dtypes, parameters, respond, tensor_or_none, version_dir


class TritonPythonModel:
    def initialize(self, args):
        config = model_config(args)
        self.dtypes = output_dtypes(config)
        self.session = make_session(version_dir(args) / parameters(config).get("head_file", "head.onnx"),
                                    intra_op_threads=1)
        self.input_name = self.session.get_inputs()[0].name

    @guarded
    def execute(self, requests):
        embeddings = [tensor_or_none(r, "pooled_embedding") for r in requests]
        logits = self.session.run(None, {self.input_name: np.concatenate(embeddings).astype(np.float32)})[0]
        scores = duplicate_probability(logits).reshape(-1, 1)
        responses, start = [], 0
        for emb in embeddings:
            responses.append(respond({"SCORE": scores[start:start + len(emb)]}, self.dtypes))
            start += len(emb)
        return responses
