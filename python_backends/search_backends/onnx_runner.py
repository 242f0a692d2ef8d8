"""ONNX Runtime sessions with the project's thread rules (see :mod:`search_backends.graph_engines`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import onnxruntime as ort

ORT_TO_NUMPY = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
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


def make_session(
    model_path: str | Path, intra_op_threads: int = 0, inter_op_threads: int = 1, providers: Sequence[str] | None = None
) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = inter_op_threads
    # Spinning threads burn the cores the tokenizers and the server need between batches.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    available = ort.get_available_providers()
    chosen = [p for p in (providers or ["CUDAExecutionProvider", "CPUExecutionProvider"]) if p in available]
    return ort.InferenceSession(str(model_path), sess_options=opts, providers=chosen)
