"""`searchbar serve`: run tritonserver on a model repository until Ctrl-C."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

from search_build.repository.writer import ENGINES_NOT_BUILT, MANIFEST_FILE

from .server import ADMIN_HEADER, LOOPBACK, TritonServer, loopback_only


def add_arguments(parser) -> None:
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--host", default=LOOPBACK, help="bind address (loopback unless you mean to expose it)")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument(
        "--sagemaker-port",
        type=int,
        default=0,
        help="also serve /ping and /invocations (Triton 2.51 binds this port on every interface: with a loopback "
        "--host it needs --sagemaker-any-interface)",
    )
    parser.add_argument(
        "--sagemaker-any-interface",
        action="store_true",
        help="accept that the SageMaker port listens on every interface (Triton 2.51 has no --sagemaker-address)",
    )
    parser.add_argument(
        "--model-control",
        choices=("none", "explicit", "poll"),
        default="none",
        help="explicit: load/unload through the repository API (every model is loaded at start)",
    )
    parser.add_argument(
        "--admin-key-file",
        type=Path,
        default=Path(".searchbar_admin_key"),
        help="where to write the key the repository, logging and trace APIs require (header "
        "searchbar-admin-key); a fresh key per start, file mode 0600",
    )
    parser.add_argument(
        "--unrestricted-admin-api",
        action="store_true",
        help="let every client load models (with file overrides: run code), change logging or "
        "tracing. Only for a trusted, isolated network",
    )
    parser.add_argument(
        "--stub-watchdog",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="with --model-control explicit: every SECONDS, reload each model whose Python stub died (Triton "
        "2.51 neither restarts it nor reports the model unready); 0 turns it off",
    )
    parser.add_argument("--log", type=Path, help="server log file (default: the terminal)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for readiness")


def run(args) -> int:
    if args.sagemaker_port and loopback_only(args.host)[0] and not args.sagemaker_any_interface:
        print(
            f"--sagemaker-port: Triton 2.51 binds the SageMaker endpoint on every interface (it has no "
            f"--sagemaker-address), not on {args.host}. Pass --sagemaker-any-interface to accept that (a container "
            "or an isolated host), or call /v2/models/<model>/infer on the loopback HTTP port instead",
            file=sys.stderr,
        )
        return 2
    # A model folder without a version folder is a config only (the checkout's model_repository/ holds just those).
    if not any(p.is_dir() and p.name.isdigit() for p in args.repository.glob("*/*")):
        print(f"{args.repository} holds no built models; run `searchbar build` first", file=sys.stderr)
        return 2
    manifest = args.repository / MANIFEST_FILE
    not_built = json.loads(manifest.read_text(encoding="utf-8")).get(ENGINES_NOT_BUILT) if manifest.exists() else None
    if not_built:
        print(
            f"{args.repository} was built with --configs-only: {', '.join(not_built)} hold ONNX graphs, not "
            "engines; build it again without that flag to serve it",
            file=sys.stderr,
        )
        return 2
    server = TritonServer(
        args.repository,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        host=args.host,
        model_control=args.model_control,
        load_models=["*"] if args.model_control == "explicit" else [],
        restrict_admin=not args.unrestricted_admin_api,
        sagemaker_port=args.sagemaker_port,
        log_path=args.log,
        log_to_terminal=args.log is None,
    )
    if server.restrict_admin:
        write_secret(args.admin_key_file, server.admin_key)
    stop = {"now": False, "ready": False}

    def request_stop(*_) -> None:
        stop["now"] = True
        if not stop["ready"]:
            raise KeyboardInterrupt  # still starting: leave the readiness wait at once

    # Both installed explicitly, as tritonserver does: a process started in the background by a non-interactive
    # shell inherits SIGINT ignored, and Ctrl-C (or a supervisor's SIGINT) must still stop the server cleanly.
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, request_stop)
    started = time.monotonic()
    try:
        server.start(timeout=args.timeout)
    except KeyboardInterrupt:
        print(f"stopped before ready (tritonserver exit {server.stop()})", flush=True)
        return 130
    stop["ready"] = True
    print(
        f"ready in {time.monotonic() - started:.1f}s: HTTP {server.http_url}  gRPC {server.grpc_url}  "
        f"metrics {server.host}:{server.metrics_port}"
        + (f"  SageMaker *:{args.sagemaker_port} (every interface)" if args.sagemaker_port else "")
        + "  (Ctrl-C stops)",
        flush=True,
    )
    print(
        f"repository/logging/trace APIs: the key in {args.admin_key_file} as header {ADMIN_HEADER} (HTTP) or "
        f"triton-grpc-protocol-{ADMIN_HEADER} (gRPC)"
        if server.restrict_admin
        else "repository/logging/trace APIs open to every client (--unrestricted-admin-api)",
        flush=True,
    )
    watchdog = _start_watchdog(args, server)
    next_check = time.monotonic() + args.stub_watchdog
    while not stop["now"] and server.process.poll() is None:
        time.sleep(0.5 if watchdog is None else min(0.5, args.stub_watchdog))
        if watchdog is not None and time.monotonic() >= next_check:
            _heal(watchdog)
            next_check = time.monotonic() + args.stub_watchdog
    code = server.stop()
    print(f"tritonserver stopped (exit {code})")
    return 0 if code in (0, None, -2) else 1


def _start_watchdog(args, server: TritonServer):
    if args.stub_watchdog <= 0:
        return None
    if args.model_control != "explicit":
        print(
            "stub watchdog off: reloading a model needs --model-control explicit (a model whose Python stub dies "
            "keeps failing until the server restarts)",
            flush=True,
        )
        return None
    from .stub_watchdog import StubWatchdog

    print(f"stub watchdog: checking every {args.stub_watchdog:g}s", flush=True)
    return StubWatchdog(server.process.pid, server.grpc_url, server.admin_headers)


def _heal(watchdog) -> None:
    try:
        reloaded = watchdog.heal()
    except Exception as exc:  # noqa: BLE001 - keep watching; the next check tries again
        print(f"stub watchdog: reload failed: {type(exc).__name__}: {exc}", flush=True)
        return
    if reloaded:
        print(f"stub watchdog: reloaded {', '.join(reloaded)} (a Python stub had died)", flush=True)


def write_secret(path: Path, value: str) -> None:
    """``value`` into ``path``, readable by this user only (created 0600, never world-readable in between)."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value + "\n")
    os.chmod(path, 0o600)
