"""In-process ONNX Runtime execution of one exported graph over a batch of ragged requests.

Used by the ``local`` target's Python-backend engine models (the pip tritonserver has no
onnxruntime backend) and by the in-process baselines of the benchmarks, so both run the same code.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import onnxruntime as ort

_ORT_TO_NUMPY = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_,
}


def threads_per_instance(requested: int, instance_count: int, cpus: int | None = None) -> int:
    """ONNX Runtime intra-op threads for one of ``instance_count`` model instances.

    ``requested`` > 0 is kept. 0 ("auto") shares the usable cores between the instances: left to
    ONNX Runtime, every instance would start one thread per core, and 2 instances on 2 cores ran
    4 threads that preempted each other (and the tokenizer stubs) mid-batch.
    """
    if requested > 0:
        return requested
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cpus // max(1, instance_count))


def make_session(model_path: str | Path, intra_op_threads: int = 0, inter_op_threads: int = 1,
                 providers: Sequence[str] | None = None) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = inter_op_threads
    # Spinning threads burn the cores the tokenizers and the server need between batches.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    available = ort.get_available_providers()
    chosen = [p for p in (providers or ["CUDAExecutionProvider", "CPUExecutionProvider"]) if p in available]
    return ort.InferenceSession(str(model_path), sess_options=opts, providers=chosen)


@dataclass(frozen=True)
class PadRule:
    """How to pad an input along its trailing (sequence) axis when requests differ in length."""
    value: float | int = 0


class OnnxBatchRunner:
    """Runs several requests as one ONNX Runtime call and splits the outputs back.

    Inputs of rank >= 2 whose last axis differs between requests are right-padded to the longest
    (``pad_values`` per input, default 0: attention masks pad with 0 so padding is inert).
    Outputs are split along axis 0 by each request's batch size and, for outputs whose axis 1
    follows the padded sequence axis, cut back to that request's own length.
    """

    def __init__(self, session: ort.InferenceSession, pad_values: Mapping[str, float | int] | None = None,
                 sequence_outputs: Sequence[str] = ()):
        self.session = session
        self.input_names = [i.name for i in session.get_inputs()]
        self.input_dtypes = {i.name: _ORT_TO_NUMPY.get(i.type) for i in session.get_inputs()}
        self.output_names = [o.name for o in session.get_outputs()]
        self.pad_values = dict(pad_values or {})
        self.sequence_outputs = set(sequence_outputs)

    def run(self, requests: Sequence[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        if not requests:
            return []
        sizes = [len(next(iter(r.values()))) for r in requests]
        lengths = [max((a.shape[-1] for a in r.values() if a.ndim >= 2), default=0) for r in requests]
        feeds = {name: self._stack(name, [r[name] for r in requests]) for name in self.input_names}
        outputs = self.session.run(self.output_names, feeds)
        results: list[dict[str, np.ndarray]] = []
        start = 0
        for size, length in zip(sizes, lengths):
            part = {}
            for name, value in zip(self.output_names, outputs):
                piece = value[start:start + size]
                if name in self.sequence_outputs:
                    piece = piece[:, :length]
                part[name] = piece
            results.append(part)
            start += size
        return results

    def _stack(self, name: str, arrays: list[np.ndarray]) -> np.ndarray:
        dtype = self.input_dtypes.get(name)
        arrays = [np.asarray(a, dtype=dtype) if dtype is not None else np.asarray(a) for a in arrays]
        if len(arrays) == 1:
            return arrays[0]
        if arrays[0].ndim >= 2:
            width = max(a.shape[-1] for a in arrays)
            pad = self.pad_values.get(name, 0)
            arrays = [a if a.shape[-1] == width else
                      np.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, width - a.shape[-1])], constant_values=pad)
                      for a in arrays]
        return np.concatenate(arrays, axis=0)
