"""Helpers shared by the reliability tests: every registered pipeline, its inputs, private servers."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from google.protobuf.json_format import MessageToDict

from search_backends.contracts.product_search import A_TITLE, B_TITLE, DUPLICATE
from search_build.pipelines import pipeline_names
from search_build.repository.writer import write_repository
from search_build.repository.spec import Ensemble, Pipeline
from search_tools.sample_queries import MUSIC_QUERIES
from search_tools.server import TritonServer

# Every pipeline the project plans; tests parametrize over all of them and skip those not registered yet.
PLANNED_PIPELINES = ("query_embedding", "query_intent", "product_duplicate", "spell_correct")


def all_pipeline_params(skip: dict[str, str] | None = None) -> list:
    """Every planned or registered pipeline; ``skip`` maps names to the reason a test module leaves them out."""
    names = list(dict.fromkeys([*PLANNED_PIPELINES, *pipeline_names()]))
    registered = set(pipeline_names())
    skip = skip or {}
    return [
        pytest.param(
            n,
            marks=pytest.mark.skip(reason=skip[n])
            if n in skip
            else ()
            if n in registered
            else pytest.mark.skip(reason=f"pipeline {n!r} is not registered yet (search_build.pipelines)"),
        )
        for n in names
    ]


def with_shared_models(pipelines: dict[str, Pipeline], changed: dict[str, object]) -> dict[str, Pipeline]:
    """Each pipeline with the models named in ``changed`` replaced: a pipeline that includes another's models
    (search_bar) must carry the same definition of them into one repository."""
    from dataclasses import replace as _replace

    return {n: _replace(p, models=tuple(changed.get(m.name, m) for m in p.models)) for n, p in pipelines.items()}


def registered(names=None) -> list[str]:
    have = pipeline_names()
    return [n for n in (names or have) if n in have]


def validating_model(pipeline: Pipeline) -> str:
    """The model that first reads the client's text: the ensemble's first step, or the entry itself."""
    entry = pipeline.model(pipeline.entry)
    return entry.steps[0].model if isinstance(entry, Ensemble) else entry.name


def patient(pipeline: Pipeline, delay_us: int) -> Pipeline:
    """The pipeline with its validating model waiting ``delay_us`` to fill a batch (so concurrent requests share one)."""
    name = validating_model(pipeline)
    b = pipeline.model(name).batching
    return pipeline.with_batching(name, replace(b, max_queue_delay_us=delay_us, preferred_batch_sizes=()))


def write_repo(pipelines: list[Pipeline], out: Path) -> Path:
    return write_repository(pipelines, out, "local", progress=lambda _: None)


@contextlib.contextmanager
def running_server(repo: Path, log: Path, **kwargs):
    server = TritonServer(repo, log_path=log, **kwargs)
    server.start(timeout=600)
    try:
        yield server
    finally:
        server.stop()


def metadata(client, model: str) -> dict:
    meta = client.get_model_metadata(model)
    return meta if isinstance(meta, dict) else MessageToDict(meta, preserving_proto_field_name=True)


def config(client, model: str) -> dict:
    cfg = client.get_model_config(model)
    cfg = cfg if isinstance(cfg, dict) else MessageToDict(cfg, preserving_proto_field_name=True)
    return cfg.get("config", cfg)


def string_inputs(cfg: dict, *, required_only: bool = True) -> list[str]:
    return [
        i["name"] for i in cfg["input"] if i["data_type"] == "TYPE_STRING" and not (required_only and i.get("optional"))
    ]


# Entries whose string inputs are all optional, with the smallest request each documents as valid. product_duplicate
# (search_build/pipelines/product_search.py, pair_tokenizer adapter): each product needs one non-empty field.
MINIMAL_REQUEST = {DUPLICATE: (A_TITLE, B_TITLE)}


def request_fields(cfg: dict) -> list[str]:
    """The string inputs of a minimal valid request: the required ones, else the entry's documented minimal set."""
    required = string_inputs(cfg)
    if required:
        return required
    if cfg["name"] not in MINIMAL_REQUEST:
        raise AssertionError(f"{cfg['name']}: every input is optional; add its minimal request to MINIMAL_REQUEST")
    minimal = list(MINIMAL_REQUEST[cfg["name"]])
    assert set(minimal) <= set(string_inputs(cfg, required_only=False)), (cfg["name"], minimal)
    return minimal


def text_tensor(module, name: str, values: list, shape=None, datatype: str = "BYTES"):
    data = np.array(
        [v if isinstance(v, (bytes, int, np.integer)) else v.encode("utf-8") for v in values],
        dtype=np.object_ if datatype == "BYTES" else None,
    )
    data = data.reshape(shape or (len(values), 1))
    t = module.InferInput(name, list(data.shape), datatype)
    t.set_data_from_numpy(data)
    return t


def good_request(module, cfg: dict, i: int = 0, overrides: dict | None = None) -> list:
    """One row for every field of a minimal valid request (``request_fields``): sample queries,
    ``overrides[name]`` where given (bytes or str)."""
    overrides = overrides or {}
    return [
        text_tensor(module, name, [overrides.get(name, MUSIC_QUERIES[(i + k) % len(MUSIC_QUERIES)])])
        for k, name in enumerate(request_fields(cfg))
    ]


def outputs_of(result, cfg: dict) -> dict[str, np.ndarray]:
    return {o["name"]: result.as_numpy(o["name"]) for o in cfg["output"] if result.as_numpy(o["name"]) is not None}


def assert_same_outputs(got: dict, want: dict, atol: float = 1e-4) -> None:
    assert set(got) == set(want)
    for name in want:
        a, b = got[name], want[name]
        assert a.shape == b.shape, (name, a.shape, b.shape)
        if a.dtype == np.object_:
            assert a.tolist() == b.tolist(), name
        else:
            assert np.allclose(a, b, atol=atol), (name, np.abs(a.astype(float) - b.astype(float)).max())


def assert_valid_outputs(out: dict, cfg: dict, rows: int = 1) -> None:
    """Every declared output is present, has ``rows`` rows and finite numbers / decodable strings."""
    for spec in cfg["output"]:
        value = out.get(spec["name"])
        assert value is not None, f"missing output {spec['name']}"
        assert value.shape[0] == rows, (spec["name"], value.shape)
        if value.dtype == np.object_:
            for v in value.reshape(-1):
                (v.decode("utf-8") if isinstance(v, bytes) else str(v))
        elif value.dtype.kind == "f":
            assert np.isfinite(value).all(), spec["name"]


def batch_size_counts(client, model: str) -> dict[int, int]:
    stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    return {int(b["batch_size"]): int(b["compute_infer"].get("count", 0)) for b in stats.get("batch_stats", [])}


def stub_processes(server_pid: int) -> dict[str, int]:
    """Python-backend stub processes of *this* server (its children only), by model instance name."""
    from search_tools.soak import server_processes

    return {label: p.pid for label, p in server_processes(server_pid).items() if label != "tritonserver"}
