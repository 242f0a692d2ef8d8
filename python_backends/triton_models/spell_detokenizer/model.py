"""Triton adapter: generated token ids (+ untouched tail) -> corrected text."""
from __future__ import annotations

import numpy as np

from search_backends.spell_codec import SpellTextCodec
from triton_helpers import guarded, model_config, output_dtypes, parameters, respond, tensor_or_none, version_dir


class TritonPythonModel:
    def initialize(self, args):
        config = model_config(args)
        self.dtypes = output_dtypes(config)
        self.codec = SpellTextCodec(version_dir(args) / parameters(config).get("model_dir", "spell_model"))

    @guarded
    def execute(self, requests):
        rows, tails, sizes = [], [], []
        for request in requests:
            ids = tensor_or_none(request, "output_ids")
            tail = tensor_or_none(request, "TAIL")
            rows.extend(ids.tolist())
            tails.extend(t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in tail.reshape(-1))
            sizes.append(len(ids))
        texts = self.codec.decode(rows, tails)  # one batch decode; pad/special tokens are skipped
        responses, start = [], 0
        for size in sizes:
            out = np.array([[t.encode("utf-8")] for t in texts[start:start + size]], dtype=np.object_)
            responses.append(respond({"CORRECTED": out}, self.dtypes))
            start += size
        return responses
