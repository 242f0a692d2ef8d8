"""The operator commands: `searchbar serve` comes up, answers `searchbar query`, and stops on Ctrl-C."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search_tools.server import free_port

SEARCHBAR = [sys.executable, "-m", "search_tools.cli"]


@pytest.fixture(scope="module")
def served(model_repository):
    http, grpc, metrics = free_port(), free_port(), free_port()
    proc = subprocess.Popen([*SEARCHBAR, "serve", "--repository", str(model_repository), "--http-port", str(http),
                             "--grpc-port", str(grpc), "--metrics-port", str(metrics),
                             "--log", str(model_repository.parent / "serve-cli.log")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ready_line = proc.stdout.readline()  # printed once the server reports ready
    assert "ready" in ready_line, ready_line
    yield proc, grpc, http
    if proc.poll() is None:
        proc.kill()


def test_query_command_prints_embedding(served):
    _, grpc, _ = served
    out = subprocess.run([*SEARCHBAR, "query", "query_embedding", "jazz piano", "lofi beats", "--url", f"127.0.0.1:{grpc}",
                          "--full"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert len(result["EMBEDDING"]) == 2 and len(result["EMBEDDING"][0]) == 384


def test_query_command_over_http(served):
    _, _, http = served
    out = subprocess.run([*SEARCHBAR, "query", "query_embedding", "rock", "--http", "--url", f"127.0.0.1:{http}"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "384 values" in out.stdout


def test_ctrl_c_stops_server_cleanly(served):
    proc, grpc, _ = served
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, rest
    assert "tritonserver stopped" in rest
    with pytest.raises(Exception):
        import tritonclient.grpc as grpcclient
        grpcclient.InferenceServerClient(f"127.0.0.1:{grpc}").is_server_live()


def test_serve_refuses_an_empty_repository(tmp_path):
    out = subprocess.run([*SEARCHBAR, "serve", "--repository", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "searchbar build" in out.stderr
