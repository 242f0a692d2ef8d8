"""Security: no pickle-based weights, no remote code, loopback by default, validated configuration values."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import psutil
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from support.reliability import registered, running_server, write_repo
from search_build.pipelines import build_pipeline
from support.project import PROJECT_ROOT, project_files

SHIPPED = ("build", "python_backends", "tools", "scripts")
# Built from pieces so this file does not match its own patterns.
REPOSITORY_SUFFIXES = {
    ".pbtxt",
    ".py",
    ".onnx",
    ".json",
    ".txt",
    ".tsv",
    ".safetensors",
}  # .tsv: spell guard word lists


def test_model_weights_load_from_safetensors_only():
    """Shipped code asks transformers for safetensors explicitly: it can never fall back to a pickled .bin."""
    call = re.compile(r"(\w+)\.from_pretrained\(([^()]*(\([^()]*\)[^()]*)*)\)", re.S)
    shipped = [p for p in project_files() if p.suffix == ".py" and p.relative_to(PROJECT_ROOT).parts[0] in SHIPPED]
    # The project's own wrappers (e.g. MeanPooledEncoder.from_pretrained) are checked where they call transformers.
    own = {m.group(1) for p in shipped for m in re.finditer(r"^\s*class\s+(\w+)", p.read_text(errors="replace"), re.M)}
    findings = []
    for path in shipped:
        text = path.read_text(errors="replace")
        for m in call.finditer(text):
            cls, args = m.group(1), m.group(2)
            if "Tokenizer" in cls or cls in ("cls", "super") or cls in own or "use_safetensors=True" in args:
                continue
            findings.append(
                f"{path.relative_to(PROJECT_ROOT)}:{text.count(chr(10), 0, m.start()) + 1}: "
                f"{cls}.from_pretrained without use_safetensors=True"
            )
    assert not findings, "\n".join(findings)


@pytest.mark.parametrize("name", registered())
def test_repository_holds_only_safe_file_types(name, tmp_path):
    repo = write_repo([build_pipeline(name)], tmp_path / "repo")
    _assert_safe_repository(repo)


def test_checked_out_model_repository_holds_only_safe_file_types():
    repo = PROJECT_ROOT / "model_repository"
    if not any(repo.glob("*/config.pbtxt")):
        pytest.skip("no model_repository built here (searchbar build)")
    _assert_safe_repository(repo, allowed=frozenset({repo / "README.md"}))  # the committed description of the configs


def _is_ctranslate2_weights(path: Path) -> bool:
    """CTranslate2's model.bin: its own flat binary format read by C++ (no pickle, no zip), in its folder."""
    from search_backends.contracts.spell_correct import CT2_DIR, CT2_DONE_FILE

    if path.name != CT2_DONE_FILE or path.parent.name != CT2_DIR or not (path.parent / "config.json").exists():
        return False
    with open(path, "rb") as fh:
        head = fh.read(4)
    return not head.startswith((b"\x80", b"PK")) and 1 <= int.from_bytes(head, "little") < 100  # format version


def _is_catalog_data(path: Path) -> bool:
    """catalog_search's FAISS index (FAISS's own binary format, read by C++) and item store (Parquet: data only),
    each under its one name in the catalog folder, checked by their magic bytes."""
    from search_backends.contracts import search_bar as C

    if path.parent.name != C.CATALOG_DIR or path.name not in (C.INDEX_FILE, C.ITEMS_FILE):
        return False
    with open(path, "rb") as fh:
        head = fh.read(4)
    if path.name == C.ITEMS_FILE:
        return head == b"PAR1"
    return head in (b"IxFI", b"IHNf")  # IndexFlatIP, IndexHNSWFlat: the two kinds catalog_build writes


def _assert_safe_repository(repo: Path, allowed: frozenset[Path] = frozenset()) -> None:
    bad = [
        str(p.relative_to(repo))
        for p in repo.rglob("*")
        if p.is_file()
        and "__pycache__" not in p.parts
        and p not in allowed
        and p.suffix.lower() not in REPOSITORY_SUFFIXES
        and not p.name.endswith((".onnx.data", ".onnx_data"))
        and not re.fullmatch(r"config\.pbtxt\.[\w-]+\.bak", p.name)  # kept by `searchbar sweep --apply`
        and not _is_ctranslate2_weights(p)
        and not _is_catalog_data(p)
    ]
    assert not bad, f"unexpected file types in {repo}: {bad}"


# --- loopback by default ---------------------------------------------------------------------------------------


def test_server_and_cli_default_to_loopback():
    import argparse

    from search_tools import serve
    from search_tools.server import TritonServer

    server = TritonServer(PROJECT_ROOT)
    assert server.host == "127.0.0.1"
    cmd = server.command()
    for flag in ("--http-address", "--grpc-address", "--metrics-address"):
        assert f"{flag}=127.0.0.1" in cmd
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    assert parser.parse_args([]).host == "127.0.0.1"


def test_running_server_listens_on_loopback_only(triton):
    sockets = [
        c
        for proc in [psutil.Process(triton.process.pid), *psutil.Process(triton.process.pid).children(True)]
        for c in proc.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]
    ports = {c.laddr.port for c in sockets}
    assert {triton.http_port, triton.grpc_port, triton.metrics_port} <= ports

    def loopback(ip: str) -> bool:
        addr = ipaddress.ip_address(ip)
        return (addr.ipv4_mapped or addr).is_loopback if addr.version == 6 else addr.is_loopback

    assert all(loopback(c.laddr.ip) for c in sockets), sockets  # gRPC shows as ::ffff:127.0.0.1


def test_invalid_model_parameter_stops_the_model_with_a_clear_error(tmp_path):
    """A bad value in config.pbtxt: the model refuses to load and Triton's error names the parameter."""
    if "query_embedding" not in registered():
        pytest.skip("query_embedding not registered")
    pipeline = build_pipeline("query_embedding")
    repo = write_repo([pipeline], tmp_path / "repo")
    tokenizer = pipeline.model(pipeline.entry).steps[0].model
    cfg = repo / tokenizer / "config.pbtxt"
    text = cfg.read_text()
    assert re.search(r'key: "max_length"\s*value \{\s*string_value: "\d+"', text)
    cfg.write_text(re.sub(r'(key: "max_length"\s*value \{\s*string_value: )"\d+"', r'\1"12B"', text))
    with running_server(repo, tmp_path / "tritonserver.log", model_control="explicit") as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        with pytest.raises(InferenceServerException) as err:
            client.load_model(tokenizer, headers=server.admin_headers)
        assert "max_length='12B' is not an integer" in err.value.message(), err.value.message()
        assert not client.is_model_ready(tokenizer) and client.is_server_live()


def test_repository_and_logging_apis_need_the_admin_key(tmp_path):
    """Explicit model control opens the load API (a file override is code execution): without the server's
    key a client can neither load, list, unload nor redirect the log; with it, it can."""
    import tritonclient.http as httpclient

    if "query_embedding" not in registered():
        pytest.skip("query_embedding not registered")
    pipeline = build_pipeline("query_embedding")
    tokenizer = pipeline.model(pipeline.entry).steps[0].model
    repo = write_repo([pipeline], tmp_path / "repo")
    with running_server(repo, tmp_path / "tritonserver.log", model_control="explicit", load_models=["*"]) as server:
        grpc_client = grpcclient.InferenceServerClient(server.grpc_url)
        http_client = httpclient.InferenceServerClient(server.http_url)
        payload = "import os\nos.system('touch " + str(tmp_path / "pwned") + "')\n"
        refused = [
            lambda: grpc_client.load_model("evil", files={"file:1/model.py": payload.encode()}),
            lambda: http_client.load_model("evil", files={"file:1/model.py": payload.encode()}),
            lambda: grpc_client.unload_model(tokenizer),
            lambda: http_client.get_model_repository_index(),
            lambda: http_client.update_log_settings({"log_file": str(tmp_path / "elsewhere.log")}),
        ]
        for call in refused:
            with pytest.raises(InferenceServerException) as caught:
                call()
            assert "restricted" in caught.value.message().lower() or "unavailable" in str(caught.value).lower(), (
                caught.value.message()
            )
        assert grpc_client.is_model_ready(tokenizer) and not (tmp_path / "pwned").exists()
        # inference stays open; the key opens the rest
        index = grpc_client.get_model_repository_index(headers=server.admin_headers, as_json=True)
        assert tokenizer in {m["name"] for m in index["models"]}
        grpc_client.unload_model(tokenizer, headers=server.admin_headers)
        grpc_client.load_model(tokenizer, headers=server.admin_headers)
        assert grpc_client.is_model_ready(tokenizer)
