"""Minimal reproduction: a queue policy makes Triton's dynamic batcher leave requests queued ~500 ms while the
model is idle (seen on tritonserver 2.51 / 24.10, CPU, Python backend).

Two identical models, each a Python model that sleeps 5 ms per batch (max_batch_size 8, dynamic batching, one
instance). The only difference: ``stall_policy`` has ``default_queue_policy { max_queue_size: 64 }``. Bursts of 8
concurrent requests go to each; a burst counts as stalled when any of its requests takes longer than 300 ms
(the work of a whole burst is ~40 ms).

Upstream-style use, with any tritonserver that has the Python backend (e.g. NVIDIA's container):

    python triton_queue_policy_stall.py write-repo /tmp/stall_repo
    tritonserver --model-repository /tmp/stall_repo &
    python triton_queue_policy_stall.py run --url localhost:8001

In this project (pip tritonserver, `bash scripts/setup.sh` done): ``python triton_queue_policy_stall.py local``
writes the repository, starts a loopback server and runs the bursts. Needs tritonclient[grpc] and numpy.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

MODELS = {"stall_none": "", "stall_policy": "  default_queue_policy { max_queue_size: 64 }\n"}
STALL_MS = 300.0

MODEL_PY = """import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        time.sleep(0.005)
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())])
            for r in requests
        ]
"""

CONFIG = """name: "{name}"
backend: "python"
max_batch_size: 8
input [ {{ name: "IN" data_type: TYPE_FP32 dims: [ 1 ] }} ]
output [ {{ name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] }} ]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
dynamic_batching {{
{policy}}}
"""


def write_repo(root: Path) -> Path:
    for name, policy in MODELS.items():
        (root / name / "1").mkdir(parents=True, exist_ok=True)
        (root / name / "1" / "model.py").write_text(MODEL_PY, encoding="utf-8")
        (root / name / "config.pbtxt").write_text(CONFIG.format(name=name, policy=policy), encoding="utf-8")
    return root


def bursts(url: str, model: str, count: int, size: int = 8) -> tuple[int, float, list[float]]:
    """``count`` bursts of ``size`` concurrent requests: (stalled bursts, slowest ms, every latency in ms)."""
    import numpy as np
    import tritonclient.grpc as grpcclient

    clients = [grpcclient.InferenceServerClient(url) for _ in range(size)]
    latencies: list[float] = []
    stalled, slowest = 0, 0.0
    for _ in range(count):
        barrier, times = threading.Barrier(size), [0.0] * size

        def one(k: int) -> None:
            data = grpcclient.InferInput("IN", [1, 1], "FP32")
            data.set_data_from_numpy(np.ones((1, 1), dtype=np.float32))
            barrier.wait()
            started = time.perf_counter()
            clients[k].infer(model, [data])
            times[k] = 1000.0 * (time.perf_counter() - started)

        threads = [threading.Thread(target=one, args=(k,)) for k in range(size)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        latencies += times
        stalled += max(times) > STALL_MS
        slowest = max(slowest, max(times))
        time.sleep(0.1)
    return stalled, slowest, latencies


def run(url: str, count: int) -> None:
    print(f"{count} bursts of 8 concurrent requests per model; stalled = a request slower than {STALL_MS:g} ms")
    for model in MODELS:
        bursts(url, model, 2)  # warm up
        stalled, slowest, latencies = bursts(url, model, count)
        latencies.sort()
        p50, p99 = latencies[len(latencies) // 2], latencies[int(0.99 * (len(latencies) - 1))]
        print(
            f"{model:13s} stalled bursts {stalled:3d}/{count}  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  max {slowest:6.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("write-repo").add_argument("root", type=Path)
    run_parser = sub.add_parser("run")
    run_parser.add_argument("--url", default="localhost:8001")
    local = sub.add_parser("local", help="this project's pip tritonserver on loopback")
    for p in (run_parser, local):
        p.add_argument("--bursts", type=int, default=25)
    args = parser.parse_args()
    if args.command == "write-repo":
        print(write_repo(args.root))
    elif args.command == "run":
        run(args.url, args.bursts)
    else:
        from search_tools.server import TritonServer

        with tempfile.TemporaryDirectory() as tmp:
            server = TritonServer(write_repo(Path(tmp) / "repo"), log_path=Path(tmp) / "server.log")
            server.start(timeout=300)
            try:
                run(server.grpc_url, args.bursts)
            finally:
                server.stop()


if __name__ == "__main__":
    main()
