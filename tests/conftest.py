"""Shared fixtures: one model repository and one real tritonserver per test session."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from catalog_support import catalog_for_tests  # noqa: E402

# Every build in the tests that names no catalog gets the small test catalog, not the 120k-item demo one.
os.environ.setdefault("SEARCHBAR_CATALOG", str(catalog_for_tests()))

from search_build.pipelines import build_pipeline  # noqa: E402
from search_build.repository.writer import write_repository  # noqa: E402
from search_tools.server import TritonServer  # noqa: E402

# Pipelines served by the session server; each test module asks for the ones it needs.
from search_build.pipelines import pipeline_names  # noqa: E402

# Every registered pipeline is served by the one session server unless narrowed for a quick run.
SERVED_PIPELINES = [p for p in os.environ.get("SEARCHBAR_TEST_PIPELINES", ",".join(pipeline_names())).split(",") if p]


@pytest.fixture(scope="session")
def pipelines():
    return [build_pipeline(name) for name in SERVED_PIPELINES]


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory, pipelines) -> Path:
    out = tmp_path_factory.mktemp("model_repository")
    return write_repository(pipelines, out, "local", progress=lambda _: None)


@pytest.fixture(scope="session")
def triton(model_repository, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "tritonserver.log"
    server = TritonServer(model_repository, log_path=log)
    server.start(timeout=600)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def grpc_client(triton):
    import tritonclient.grpc as grpcclient

    return grpcclient.InferenceServerClient(triton.grpc_url)


@pytest.fixture(scope="session")
def http_client(triton):
    import tritonclient.http as httpclient

    return httpclient.InferenceServerClient(triton.http_url, concurrency=16)


def served_precision(client, model: str) -> str:
    """The precision the build gave a served engine model (its ``precision`` parameter; fp32 when absent)."""
    config = client.get_model_config(model, as_json=True)["config"]
    return config.get("parameters", {}).get("precision", {}).get("string_value", "fp32")


# Largest element difference a served encoder may show: FP32 engines agree with the oracle to float rounding;
# bf16 ones are held to the build's parity gate (cosine >= 0.9999), element differences reach ~1e-3.
ELEMENT_TOLERANCE = {"fp32": 1e-4, "bf16": 5e-3}
# The same row in different batches (other padding, other kernel blocking).
BATCH_TOLERANCE = {"fp32": 1e-5, "bf16": 5e-3}


def string_input(module, name: str, values, *, raw: bool = False):
    """A [N, 1] BYTES input; ``raw`` sends the given bytes untouched (for invalid UTF-8 tests)."""
    data = np.array([[v if raw else v.encode("utf-8")] for v in values], dtype=np.object_)
    tensor = module.InferInput(name, list(data.shape), "BYTES")
    tensor.set_data_from_numpy(data)
    return tensor


@pytest.fixture
def mocked_pb_utils(monkeypatch):
    """The stand-in pb_utils module installed for one test; `.load_adapter(name)` imports an adapter."""
    import sys

    import mock_pb_utils

    for name in ("triton_python_backend_utils", "triton_helpers"):  # restored (or removed) after the test
        monkeypatch.setitem(sys.modules, name, sys.modules.get(name))
    mock_pb_utils.install()
    sys.modules.pop("triton_helpers", None)  # re-imported against the stand-in
    return mock_pb_utils


@pytest.fixture(scope="session")
def spell_serving_dir() -> Path:
    """The default spell checkpoint's folder (tokenizer and config; enough for the text adapters)."""
    from search_build.pipelines.spell_correct import DEFAULT_CHECKPOINT

    return Path(DEFAULT_CHECKPOINT)
