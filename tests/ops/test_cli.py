"""The operator commands: `searchbar serve` comes up, answers `searchbar query`, and stops on Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from search_tools.cli import COMMANDS
from search_tools.server import free_port, servers_serving

SEARCHBAR = [sys.executable, "-m", "search_tools.cli"]


@pytest.fixture(scope="module")
def served(model_repository):
    http, grpc, metrics = free_port(), free_port(), free_port()
    proc = subprocess.Popen(
        [
            *SEARCHBAR,
            "serve",
            "--repository",
            str(model_repository),
            "--http-port",
            str(http),
            "--grpc-port",
            str(grpc),
            "--metrics-port",
            str(metrics),
            "--log",
            str(model_repository.parent / "serve-cli.log"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ready_line = proc.stdout.readline()  # printed once the server reports ready
    assert "ready" in ready_line, ready_line
    yield proc, grpc, http
    if proc.poll() is None:  # a failed test left it running: SIGTERM stops tritonserver too, SIGKILL would orphan it
        proc.terminate()
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_query_command_prints_embedding(served):
    _, grpc, _ = served
    out = subprocess.run(
        [*SEARCHBAR, "query", "query_embedding", "jazz piano", "lofi beats", "--url", f"127.0.0.1:{grpc}", "--full"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert len(result["EMBEDDING"]) == 2 and len(result["EMBEDDING"][0]) == 384


def test_query_command_over_http(served):
    _, _, http = served
    out = subprocess.run(
        [*SEARCHBAR, "query", "query_embedding", "rock", "--http", "--url", f"127.0.0.1:{http}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
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
    out = subprocess.run(
        [*SEARCHBAR, "serve", "--repository", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2 and "searchbar build" in out.stderr


def test_sigterm_stops_the_server_a_command_started(tmp_path):
    """`searchbar` commands that start their own tritonserver (soak here; sweep and demo alike) stop it on
    SIGTERM instead of leaving it running without a parent."""
    from search_build.pipelines import build_pipeline
    from search_build.repository.writer import write_repository

    repo = write_repository([build_pipeline("query_embedding")], tmp_path / "repo", "local", progress=lambda _: None)
    proc = subprocess.Popen(
        [
            *SEARCHBAR,
            "soak",
            "--repository",
            str(repo),
            "--duration",
            "300",
            "--rate",
            "5",
            "--out",
            str(tmp_path / "soak"),
            "--log",
            str(tmp_path / "soak-server.log"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not servers_serving([repo]) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        assert servers_serving([repo]), "soak never started its server"
        time.sleep(3)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=90)
        assert proc.returncode == 128 + signal.SIGTERM, out
        deadline = time.monotonic() + 30
        while servers_serving([repo]) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert servers_serving([repo]) == []
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("name", [name for name, _, _ in COMMANDS])
def test_every_command_has_help(name, capsys):
    """Each command's --help loads its module and lists its own options."""

    from search_tools.cli import main

    with pytest.raises(SystemExit) as exit:
        main([*name.split(), "--help"])
    assert exit.value.code == 0
    assert f"usage: searchbar {name}" in capsys.readouterr().out


def test_top_level_help_imports_no_command_module():
    """`searchbar --help` lists every command without importing their modules (it stays fast)."""
    code = (
        "import sys; from search_tools.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('search_build', 'search_tools.', 'torch'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "train" in out.stdout and "export" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "['search_tools.cli']"
