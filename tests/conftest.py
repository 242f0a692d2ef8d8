"""Shared fixtures: one model repository and one real tritonserver per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from support.catalog import catalog_for_tests  # noqa: E402

# Every build in the tests that names no catalog gets the small test catalog, not the 120k-item demo one.
os.environ.setdefault("SEARCHBAR_CATALOG", str(catalog_for_tests()))

from search_build.pipelines import build_pipeline  # noqa: E402
from search_build.repository.writer import write_repository  # noqa: E402
from search_tools.server import TritonServer  # noqa: E402

from support.serving import SERVED_PIPELINES  # noqa: E402


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


@pytest.fixture
def mocked_pb_utils(monkeypatch):
    """The stand-in pb_utils module installed for one test; `.load_adapter(name)` imports an adapter."""
    import sys

    from support import mock_pb_utils

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


# Test layers, one folder each; a test is marked with its folder's layer (`pytest -m unit` runs the fast layer).
LAYERS = ("unit", "export", "serving", "ops")


def pytest_collection_modifyitems(config, items):
    for item in items:
        layer = item.path.parent.name
        if layer not in LAYERS:
            raise pytest.UsageError(f"{item.path}: every test module lives in one of tests/{{{','.join(LAYERS)}}}/")
        item.add_marker(layer)
