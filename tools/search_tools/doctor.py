"""`searchbar doctor`: prove the local serving stack works on this machine (no models needed)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from .server import TritonServer, pytriton_root, server_env

_PROBE = """
import numpy as np, triton_python_backend_utils as pb_utils
import onnxruntime, tokenizers, search_backends
class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy())])
                for r in requests]
"""
_CONFIG = """name: "probe"
backend: "python"
max_batch_size: 4
input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] } ]
"""


def perf_analyzer_path() -> Path:
    return Path(sys.executable).parent / "perf_analyzer"


def run(args=None) -> int:
    print(f"tritonserver: {pytriton_root() / 'bin' / 'tritonserver'}")
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        (repo / "probe" / "1").mkdir(parents=True)
        (repo / "probe" / "config.pbtxt").write_text(_CONFIG)
        (repo / "probe" / "1" / "model.py").write_text(_PROBE)
        with TritonServer(repo, log_path=Path(tmp) / "log.txt") as server:
            import numpy as np
            import tritonclient.http as httpclient

            client = httpclient.InferenceServerClient(server.http_url)
            x = httpclient.InferInput("X", [1, 1], "FP32")
            x.set_data_from_numpy(np.array([[4.5]], dtype=np.float32))
            y = client.infer("probe", [x]).as_numpy("Y")
            assert float(y[0, 0]) == 4.5, y
            print(f"tritonserver + Python backend stub: OK ({client.get_server_metadata()['version']})")
            pa = subprocess.run(
                [
                    str(perf_analyzer_path()),
                    "-m",
                    "probe",
                    "-u",
                    server.grpc_url,
                    "-i",
                    "grpc",
                    "--measurement-mode",
                    "count_windows",
                    "--measurement-request-count",
                    "50",
                    "--stability-percentage",
                    "999",
                    "--max-trials",
                    "3",
                    "--concurrency-range",
                    "1",
                ],
                env=server_env(),
                capture_output=True,
                text=True,
                timeout=120,
            )
            if pa.returncode != 0:
                print(pa.stdout[-2000:], pa.stderr[-2000:], file=sys.stderr)
                print("perf_analyzer: FAILED", file=sys.stderr)
                return 1
            print("perf_analyzer: OK")
    probe = subprocess.run(
        [sys.executable, "-c", "import model_analyzer; print(model_analyzer.__file__)"], capture_output=True, text=True
    )
    print("model-analyzer:", "OK" if probe.returncode == 0 else f"FAILED {probe.stderr[-500:]}")
    return 0 if probe.returncode == 0 else 1
