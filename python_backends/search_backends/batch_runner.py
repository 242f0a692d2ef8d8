"""One engine call for a batch of ragged requests: pad once, run, split the outputs back per request.

Used by the ``local`` target's Python-backend engine models (the pip tritonserver has no onnxruntime or
openvino backend) and by the benchmarks' in-process baselines, so both run the same code.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .graph_engines import GraphEngine


class BatchRunner:
    """Runs several requests as one engine call and splits the outputs back.

    Inputs of rank >= 2 whose last axis differs between requests are right-padded with 0 to the longest
    (attention masks pad with 0, so padding is inert). Outputs are split along axis 0 by each request's
    batch size (the served encoders pool, so no output follows the padded sequence axis).
    """

    def __init__(self, engine: GraphEngine):
        self.engine = engine
        self.input_names = list(engine.input_names)
        self.output_names = list(engine.output_names)

    def run(self, requests: Sequence[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        if not requests:
            return []
        sizes = [len(next(iter(r.values()))) for r in requests]
        feeds = {name: self._stack(name, [r[name] for r in requests]) for name in self.input_names}
        outputs = self.engine.infer(feeds)
        results: list[dict[str, np.ndarray]] = []
        start = 0
        for size in sizes:
            results.append({name: value[start : start + size] for name, value in zip(self.output_names, outputs)})
            start += size
        return results

    def _stack(self, name: str, arrays: list[np.ndarray]) -> np.ndarray:
        dtype = self.engine.input_dtypes.get(name)
        arrays = [np.asarray(a, dtype=dtype) if dtype is not None else np.asarray(a) for a in arrays]
        if len(arrays) == 1:
            return arrays[0]
        if arrays[0].ndim >= 2:
            width = max(a.shape[-1] for a in arrays)
            arrays = [
                a
                if a.shape[-1] == width
                else np.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, width - a.shape[-1])], constant_values=0)
                for a in arrays
            ]
        return np.concatenate(arrays, axis=0)
