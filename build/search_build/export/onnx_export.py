"""Shared ONNX export and verification helpers (dynamo exporter only: the legacy one mis-exported BART)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

OPSET = 18


def export_dynamo(
    module: torch.nn.Module,
    example_inputs: tuple,
    out_path: str | Path,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_shapes,
    opset: int = OPSET,
) -> Path:
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    module.eval()
    with torch.no_grad():
        program = torch.onnx.export(
            module,
            example_inputs,
            dynamo=True,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_shapes=dynamic_shapes,
            opset_version=opset,
            optimize=True,
            verbose=False,
        )
    program.save(str(out_path), external_data=False)
    return out_path


def max_abs_diff_vs_torch(
    module: torch.nn.Module, onnx_path: str | Path, feeds: Mapping[str, np.ndarray]
) -> dict[str, float]:
    """Run the graph in ONNX Runtime and the module in PyTorch on the same inputs; per-output max |diff|."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    got = session.run(names, dict(feeds))
    with torch.no_grad():
        want = module(*[torch.from_numpy(np.asarray(feeds[i.name])) for i in session.get_inputs()])
    if isinstance(want, torch.Tensor):
        want = (want,)
    return {n: float(np.max(np.abs(g - w.numpy()))) if g.size else 0.0 for n, g, w in zip(names, got, want)}
