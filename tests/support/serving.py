"""What the served tests share: which pipelines the session server serves, input builders, tolerances."""

from __future__ import annotations

import os

import numpy as np

from search_build.pipelines import pipeline_names

# Every registered pipeline is served by the one session server unless narrowed for a quick run.
SERVED_PIPELINES = [p for p in os.environ.get("SEARCHBAR_TEST_PIPELINES", ",".join(pipeline_names())).split(",") if p]

# Largest element difference a served encoder may show: FP32 engines agree with the oracle to float rounding;
# bf16 ones are held to the build's parity gate (cosine >= 0.9999), element differences reach ~1e-3.
ELEMENT_TOLERANCE = {"fp32": 1e-4, "bf16": 5e-3}
# The same row in different batches (other padding, other kernel blocking).
BATCH_TOLERANCE = {"fp32": 1e-5, "bf16": 5e-3}


def served_precision(client, model: str) -> str:
    """The precision the build gave a served engine model (its ``precision`` parameter; fp32 when absent)."""
    config = client.get_model_config(model, as_json=True)["config"]
    return config.get("parameters", {}).get("precision", {}).get("string_value", "fp32")


def string_input(module, name: str, values, *, raw: bool = False):
    """A [N, 1] BYTES input; ``raw`` sends the given bytes untouched (for invalid UTF-8 tests)."""
    data = np.array([[v if raw else v.encode("utf-8")] for v in values], dtype=np.object_)
    tensor = module.InferInput(name, list(data.shape), "BYTES")
    tensor.set_data_from_numpy(data)
    return tensor
