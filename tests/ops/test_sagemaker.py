"""The SageMaker package, unpacked the way SageMaker does and served by a real tritonserver started the
way the SageMaker Triton container's serve script starts it, answers /ping and /invocations (KServe
JSON and binary+json) with the same results as the normal endpoint, using only its packaged
Python environment."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import triton_to_np_dtype

from search_build.pipelines import build_pipeline, pipeline_names
from search_build.repository.writer import write_repository
from search_build.deploy.sagemaker_package import EXECUTION_ENV_PATH, load_plan, package, read_configs, serve_arguments
from search_tools.sample_queries import MUSIC_QUERIES
from search_tools.server import TritonServer, free_port

BINARY_JSON = "application/vnd.sagemaker-triton.binary+json"


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    pipelines = [build_pipeline(name) for name in pipeline_names()]
    return write_repository(pipelines, tmp_path_factory.mktemp("repo"), "local", progress=lambda _: None)


# catalog_search takes vectors (no generic sample request) and is packaged and served inside search_bar's endpoint.
ENDPOINT_PIPELINES = [n for n in pipeline_names() if n != "catalog_search"]


@pytest.fixture(scope="module", params=ENDPOINT_PIPELINES)
def endpoint(request, repository, tmp_path_factory):
    """(package, unpacked dir, server, sagemaker url) for one pipeline's entry model."""
    entry = build_pipeline(request.param).entry
    work = tmp_path_factory.mktemp(f"sagemaker-{request.param}")
    # Level 0: still a real gzip archive, unpacked by tar as SageMaker does, without ~15 s of deflate per endpoint.
    pkg = package(repository, work / "model.tar.gz", default_model=entry, python_env="installed", compresslevel=0)
    unpacked = work / "opt_ml_model"
    unpacked.mkdir()
    subprocess.run(["tar", "-xzf", str(pkg.archive), "-C", str(unpacked)], check=True)  # as SageMaker does
    port = free_port()
    # PYTHONPATH cleared: the Python models may only import what the package ships.
    server = TritonServer(
        unpacked,
        sagemaker_port=port,
        extra_args=serve_arguments(pkg.environment),
        env={**pkg.environment, "PYTHONPATH": ""},
        log_path=work / "tritonserver.log",
    )
    server.start(timeout=300)
    url = f"http://127.0.0.1:{port}"
    _wait_for_ping(url)
    yield pkg, unpacked, server, url
    server.stop()


def _wait_for_ping(url, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:  # the SageMaker listener starts just after the KServe one
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _sample_inputs(config: mc.ModelConfig, n: int = 4):
    """Text for every required input; where all inputs are optional (product_duplicate's six fields),
    text for every optional STRING input, so the request is never empty."""
    required = [t for t in config.input if not t.optional]
    if any(t.data_type != mc.TYPE_STRING for t in required):
        pytest.skip(f"{config.name}: no generic sample for non-text inputs")
    chosen = required or [t for t in config.input if t.data_type == mc.TYPE_STRING]
    assert chosen, f"{config.name}: no text input to send"
    tensors = []
    for t in chosen:
        shape = [n, *[1 if d < 0 else d for d in t.dims]]
        data = np.array(MUSIC_QUERIES[:n], dtype=np.object_).reshape(n, *([1] * (len(shape) - 1)))
        data = np.broadcast_to(data, shape).astype(np.object_)
        tensors.append((t.name, shape, data))
    return tensors


def _infer_inputs(samples):
    inputs = []
    for name, shape, data in samples:
        tensor = httpclient.InferInput(name, shape, "BYTES")
        tensor.set_data_from_numpy(data)
        inputs.append(tensor)
    return inputs


def _post(url, body: bytes, content_type: str):
    request = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.headers, response.read()


def _same(got: np.ndarray, want: np.ndarray, name: str):
    assert got.shape == want.shape, name
    if want.dtype == np.object_:
        assert got.tolist() == want.tolist(), name
    else:
        assert np.allclose(got.astype(np.float64), want.astype(np.float64), atol=1e-5), name


def test_archive_root_is_the_model_repository(endpoint):
    pkg, unpacked, _, _ = endpoint
    with tarfile.open(pkg.archive) as tar:
        roots = {m.name.split("/")[0] for m in tar.getmembers()}
    assert roots == set(pkg.models) | {"searchbar_manifest.json"}
    assert pkg.environment["SAGEMAKER_TRITON_DEFAULT_MODEL_NAME"] == pkg.models[0]
    configs = read_configs(unpacked)
    for name in pkg.python_models:
        assert configs[name].parameters["EXECUTION_ENV_PATH"].string_value == EXECUTION_ENV_PATH
        assert (unpacked / name / "python_env" / "bin" / "activate").is_file()


def test_ping_and_only_the_needed_models_are_loaded(endpoint):
    pkg, _, server, url = endpoint
    with urllib.request.urlopen(f"{url}/ping") as r:
        assert r.status == 200
    client = httpclient.InferenceServerClient(server.http_url)
    index = client.get_model_repository_index(headers=server.admin_headers)
    ready = {m["name"] for m in index if m.get("state") == "READY"}
    assert ready == set(pkg.loaded), "explicit loading (default model + BLS callees) must bring up exactly these"
    assert set(pkg.loaded) <= set(pkg.models)  # the rest are shipped for their files (search_bar's in-process stages)


def test_python_models_run_on_the_packaged_environment(endpoint):
    _, unpacked, server, _ = endpoint
    stubs = [p for p in os.listdir("/proc") if p.isdigit() and _is_stub_of(p, unpacked)]
    assert stubs, "no Python backend stub is running"
    for pid in stubs:
        maps = open(f"/proc/{pid}/maps").read()
        ext = {line.split()[-1] for line in maps.splitlines() if "site-packages/numpy/" in line}
        assert ext and all(path.startswith(str(unpacked)) for path in ext), sorted(ext)[:3]


def _is_stub_of(pid, unpacked):
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        return False
    return b"triton_python_backend_stub" in cmd and str(unpacked).encode() in cmd


def test_invocations_json_matches_the_kserve_endpoint(endpoint):
    pkg, unpacked, server, url = endpoint
    entry = pkg.default_model
    samples = _sample_inputs(read_configs(unpacked)[entry])
    body = {
        "inputs": [{"name": n, "shape": s, "datatype": "BYTES", "data": d.reshape(-1).tolist()} for n, s, d in samples]
    }
    headers, raw = _post(url, json.dumps(body).encode(), "application/json")
    result = json.loads(raw)
    want = httpclient.InferenceServerClient(server.http_url).infer(entry, _infer_inputs(samples))
    assert result["model_name"] == entry
    for out in result["outputs"]:
        dtype = triton_to_np_dtype(out["datatype"])
        got = np.array(out["data"], dtype=np.object_ if dtype == np.object_ else dtype).reshape(out["shape"])
        expected = want.as_numpy(out["name"])
        if expected.dtype == np.object_:
            expected = np.vectorize(lambda b: b.decode() if isinstance(b, bytes) else b, otypes=[object])(expected)
        _same(got, expected, out["name"])


def test_invocations_binary_json_matches_the_kserve_endpoint(endpoint):
    pkg, unpacked, server, url = endpoint
    entry = pkg.default_model
    samples = _sample_inputs(read_configs(unpacked)[entry])
    body, json_size = httpclient.InferenceServerClient.generate_request_body(_infer_inputs(samples))
    headers, raw = _post(url, body, f"{BINARY_JSON};json-header-size={json_size}")
    content_type = headers["Content-Type"]
    header_length = int(content_type.split("json-header-size=")[1]) if "json-header-size=" in content_type else None
    result = httpclient.InferenceServerClient.parse_response_body(raw, header_length=header_length)
    want = httpclient.InferenceServerClient(server.http_url).infer(entry, _infer_inputs(samples))
    names = [o["name"] for o in result.get_response()["outputs"]]
    assert names
    for name in names:
        _same(result.as_numpy(name), want.as_numpy(name), name)


def test_query_embedding_invocations_match_sentence_transformers(endpoint):
    pkg, _, _, url = endpoint
    if pkg.default_model != "query_embedding":
        pytest.skip("sentence-transformers reference applies to query_embedding only")
    from sentence_transformers import SentenceTransformer

    from search_build.export.sentence_checkpoint import default_embedding_checkpoint

    queries = MUSIC_QUERIES[:8]
    body = {"inputs": [{"name": "TEXT", "shape": [len(queries), 1], "datatype": "BYTES", "data": queries}]}
    _, raw = _post(url, json.dumps(body).encode(), "application/json")
    out = json.loads(raw)["outputs"][0]
    got = np.array(out["data"], np.float32).reshape(out["shape"])
    reference = SentenceTransformer(str(default_embedding_checkpoint()), device="cpu")
    reference.max_seq_length = 128
    want = reference.encode(queries, normalize_embeddings=True, convert_to_numpy=True)
    cosine = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cosine.min() >= 0.9999


def test_invalid_request_is_a_client_error(endpoint):
    _, _, _, url = endpoint
    with pytest.raises(urllib.error.HTTPError) as err:
        _post(
            url, b'{"inputs": [{"name": "NOPE", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}', "application/json"
        )
    assert 400 <= err.value.code < 500


# ------------------------------------------------------------------------- no server needed


def test_registered_bls_calls_reach_the_container_environment(repository):
    manifest = json.loads((repository / "searchbar_manifest.json").read_text())
    for name, info in manifest["pipelines"].items():
        needed, explicit = load_plan(read_configs(repository), manifest["bls_calls"], info["entry"])
        for caller, callees in manifest["bls_calls"].items():
            if caller in needed:
                assert set(callees) <= set(explicit) | {info["entry"]}
