"""Run the pip-installed tritonserver (nvidia-pytriton wheel) on this machine.

The wheel ships the server binary, the Python backend and one stub per Python version, but the
backend directory inside site-packages must get the stub for *this* interpreter, so we assemble a
writable backend directory once per environment and point the server at it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"


def _site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def pytriton_root() -> Path:
    root = _site_packages() / "pytriton" / "tritonserver"
    if not (root / "bin" / "tritonserver").exists():
        raise FileNotFoundError(f"tritonserver not found under {root}; run scripts/setup.sh (installs nvidia-pytriton)")
    return root


def _libpython_dir() -> list[Path]:
    """The directory of *this* interpreter's shared libpython.

    The stub links libpython3.X.so.1.0 by soname; if the system one (e.g. Debian's 3.11.2) is
    older than the running interpreter (e.g. pyenv 3.11.7), the interpreter's own extension
    modules fail with undefined symbols. Putting our libpython first makes the stub match.
    """
    libdir = sysconfig.get_config_var("LIBDIR")
    soname = f"libpython{sys.version_info.major}.{sys.version_info.minor}.so.1.0"
    return [Path(libdir)] if libdir and (Path(libdir) / soname).exists() else []


def library_path() -> str:
    sp = _site_packages()
    parts = _libpython_dir() + [sp / "nvidia_pytriton.libs", sp / "nvidia" / "cuda_runtime" / "lib"]
    existing = os.environ.get("LD_LIBRARY_PATH", "")
    return ":".join([str(p) for p in parts] + ([existing] if existing else []))


def backend_directory(cache_dir: Path | None = None) -> Path:
    """A writable copy of the wheel's backends with the stub for the running Python."""
    pyver = f"{sys.version_info.major}.{sys.version_info.minor}"
    root = pytriton_root()
    cache_dir = cache_dir or Path(sys.prefix) / "var" / "triton_backends"
    target = cache_dir / pyver
    stub_src = root / "python_backend_stubs" / pyver / "triton_python_backend_stub"
    stub_dst = target / "python" / "triton_python_backend_stub"
    if not stub_dst.exists():
        tmp = cache_dir / f".{pyver}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(root / "backends", tmp)
        shutil.copy2(stub_src, tmp / "python" / "triton_python_backend_stub")
        try:
            tmp.rename(target)
        except OSError:  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def loopback_only(host: str) -> tuple[bool, list[str]]:
    """Whether every address ``host`` resolves to is a loopback address, and those addresses (``socket.gaierror``
    when it does not resolve)."""
    import ipaddress

    addresses = sorted({info[4][0] for info in socket.getaddrinfo(host, None)})
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses), addresses


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def servers_serving(repositories) -> list[int]:
    """Process ids of the live tritonservers whose command line names one of ``repositories``."""
    import psutil

    wanted = [str(Path(r).resolve()) for r in repositories]
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        argv = proc.info["cmdline"] or []
        if (
            argv
            and Path(argv[0]).name == "tritonserver"
            and proc.info["status"] != psutil.STATUS_ZOMBIE
            and any(w in arg for arg in argv for w in wanted)
        ):
            found.append(proc.pid)
    return found


def kill_servers_serving(repositories, *, grace_s: float = 10.0) -> list[int]:
    """Stop every tritonserver whose command line names one of ``repositories`` (and its stubs).

    For servers we did not start ourselves: Model Analyzer launches its own in a new session and
    leaves it running when it is stopped mid-profile. Returns the process ids that were signalled.
    """
    found = servers_serving(repositories)
    for pid in found:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(os.getpgid(pid), signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_alive(pid) for pid in found):
        time.sleep(0.2)
    for pid in filter(_alive, found):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)
    return found


def _alive(pid: int) -> bool:
    """Running, not a zombie: a server whose parent died stays a zombie here until init reaps it."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = library_path()
    # The stub embeds this interpreter; let it import the same packages as we do.
    paths = [p for p in sys.path if p and Path(p).is_dir()]
    env["PYTHONPATH"] = ":".join(dict.fromkeys(paths + env.get("PYTHONPATH", "").split(":")).keys()).strip(":")
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.update(extra or {})
    return env


# APIs that change what the server runs or where it writes (model load with file overrides = code execution;
# the logging API can redirect the log file): callable only with this header and the server's key.
ADMIN_HEADER = "searchbar-admin-key"
ADMIN_APIS = "model-repository,logging,trace"


@dataclass
class TritonServer:
    """A tritonserver child process bound to loopback ports; its repository/logging/trace APIs need the admin key."""

    model_repository: Path
    http_port: int = 0
    grpc_port: int = 0
    metrics_port: int = 0
    host: str = LOOPBACK
    model_control: str = "none"  # or "explicit"
    load_models: list[str] = field(default_factory=list)
    sagemaker_port: int = 0  # >0 turns on the SageMaker endpoint
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    log_verbose: int = 0
    log_to_terminal: bool = False
    # None: a fresh random key per server; restrict_admin=False opens those APIs to every client (opt-in).
    admin_key: str | None = None
    restrict_admin: bool = True
    process: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        import secrets

        self.model_repository = Path(self.model_repository).resolve()
        if self.restrict_admin and not self.admin_key:
            self.admin_key = secrets.token_urlsafe(24)
        self.http_port = self.http_port or free_port(self.host)
        self.grpc_port = self.grpc_port or free_port(self.host)
        self.metrics_port = self.metrics_port or free_port(self.host)

    @property
    def admin_headers(self) -> dict[str, str]:
        """Headers for load/unload, repository index, logging and trace calls (tritonclient ``headers=``), for
        either protocol: Triton's gRPC server expects the key under a ``triton-grpc-protocol-`` prefix."""
        if not self.restrict_admin:
            return {}
        return {ADMIN_HEADER: self.admin_key, f"triton-grpc-protocol-{ADMIN_HEADER}": self.admin_key}

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    def command(self) -> list[str]:
        cmd = [
            str(pytriton_root() / "bin" / "tritonserver"),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backend_directory()}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            f"--log-verbose={self.log_verbose}",
            "--exit-on-error=true",
        ]
        if self.restrict_admin:
            cmd += [
                f"--grpc-restricted-protocol={ADMIN_APIS}:{ADMIN_HEADER}={self.admin_key}",
                f"--http-restricted-api={ADMIN_APIS}:{ADMIN_HEADER}={self.admin_key}",
            ]
        if self.model_control != "none":
            cmd.append(f"--model-control-mode={self.model_control}")
            cmd += [f"--load-model={m}" for m in self.load_models]
        if self.sagemaker_port:
            # 2.51 has no --sagemaker-address: the SageMaker endpoint listens on every interface.
            cmd += ["--allow-sagemaker=true", f"--sagemaker-port={self.sagemaker_port}"]
        return cmd + list(self.extra_args)

    def start(self, timeout: float = 300.0) -> "TritonServer":
        if self.log_path:
            log = open(self.log_path, "ab")
        else:
            log = None if self.log_to_terminal else subprocess.DEVNULL
        self.process = subprocess.Popen(
            self.command(), env=server_env(self.env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.wait_ready(timeout)
        return self

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"tritonserver exited with code {self.process.returncode}; see {self.log_path or 'its output'}"
                    + self._log_tail()
                )
            if self.is_ready():
                return
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"tritonserver not ready after {timeout:.0f}s" + self._log_tail())

    def _log_tail(self, n: int = 4000) -> str:
        if self.log_path and Path(self.log_path).exists():
            return "\n--- server log tail ---\n" + Path(self.log_path).read_text(errors="replace")[-n:]
        return ""

    def stop(self, timeout: float = 60.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        # SIGINT is tritonserver's graceful shutdown: it drains in-flight requests first.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(10)

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
