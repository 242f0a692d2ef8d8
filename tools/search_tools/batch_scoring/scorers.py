"""Scorers of a batch of pairs: Triton's ``product_duplicate`` ensemble over gRPC, or the same chain in-process."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from search_backends.contracts.product_search import PAIR_FIELDS, SCORE, DUPLICATE

from .readers import FIELDS, Row


class Scorer(Protocol):
    async def score(self, rows: Sequence[Row]) -> np.ndarray:
        """P(duplicate) float32 [len(rows)]."""

    async def identity(self) -> dict:
        """What scores: recorded in the journal and checked on resume (optional for a scorer)."""

    def is_transient(self, error: BaseException) -> bool:
        """Whether retrying the same request later may succeed."""


_TRANSIENT_STATUSES = {
    "StatusCode.UNAVAILABLE",
    "StatusCode.DEADLINE_EXCEEDED",
    "StatusCode.RESOURCE_EXHAUSTED",
    "StatusCode.ABORTED",
    "StatusCode.CANCELLED",
}
_TRANSIENT_MESSAGES = ("unknown model", "not ready", "is not healthy")


def is_transient_triton_error(error: BaseException) -> bool:
    """Whether a tritonclient error is the server's fault for now (retry later), not the request's."""
    status = getattr(error, "status", lambda: None)()
    message = str(error).lower()
    if status in _TRANSIENT_STATUSES:
        return True
    # While a restarted server is still loading its models they are "unknown" or "not ready"; a crashing
    # server answers "stub ... is not healthy" for the moments its Python stubs are dead before it is.
    return status is not None and any(sign in message for sign in _TRANSIENT_MESSAGES)


def triton_pair_inputs(module, columns: Sequence[Sequence[str | None]]) -> list:
    """The ``product_duplicate`` ensemble's six BYTES inputs, [rows, 1] each, from the six field columns in FIELDS
    order (None = the field is missing). ``module``: tritonclient.grpc or tritonclient.grpc.aio."""
    inputs = []
    for name, column in zip(PAIR_FIELDS, columns):
        values = np.array([(v or "").encode("utf-8") for v in column], dtype=np.object_).reshape(-1, 1)
        tensor = module.InferInput(name, list(values.shape), "BYTES")
        tensor.set_data_from_numpy(values)
        inputs.append(tensor)
    return inputs


class TritonScorer:
    """The ``product_duplicate`` ensemble over gRPC (asyncio client: many requests in flight)."""

    def __init__(self, url: str, model: str = DUPLICATE, timeout_s: float = 60.0):
        import tritonclient.grpc.aio as grpcclient

        self._grpc = grpcclient
        self.client = grpcclient.InferenceServerClient(url)
        self.model = model
        self.timeout_s = timeout_s

    async def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if await self.client.is_model_ready(self.model):
                    return
            except Exception as error:  # server not up yet
                if not self.is_transient(error) and "connect" not in str(error).lower():
                    raise
            if time.monotonic() > deadline:
                raise TimeoutError(f"model {self.model} not ready after {timeout_s:.0f}s")
            await asyncio.sleep(1.0)

    async def identity(self) -> dict:
        """Every model the entry runs (ensemble steps, recursively): name, served version, artifact_sha256."""
        from search_build.repository.writer import ARTIFACT_DIGEST_PARAMETER

        models, pending = {}, [self.model]
        while pending:
            name = pending.pop()
            if name in models:
                continue
            config = (await self.client.get_model_config(name, as_json=True))["config"]
            metadata = await self.client.get_model_metadata(name, as_json=True)
            models[name] = {
                "versions": sorted(metadata.get("versions", [])),
                "artifact_sha256": config.get("parameters", {}).get(ARTIFACT_DIGEST_PARAMETER, {}).get("string_value"),
            }
            pending += [step["model_name"] for step in config.get("ensemble_scheduling", {}).get("step", [])]
        return {"triton_model": self.model, "models": dict(sorted(models.items()))}

    async def score(self, rows: Sequence[Row]) -> np.ndarray:
        inputs = triton_pair_inputs(self._grpc, [[row.fields[c] for row in rows] for c in range(len(FIELDS))])
        outputs = [self._grpc.InferRequestedOutput(SCORE)]
        result = await self.client.infer(self.model, inputs, outputs=outputs, client_timeout=self.timeout_s)
        return result.as_numpy(SCORE).reshape(-1).astype(np.float32)

    def is_transient(self, error: BaseException) -> bool:
        return is_transient_triton_error(error)

    async def close(self) -> None:
        await self.client.close()


class OnnxScorer:
    """The same chain in-process (tokenize -> encoder -> head) for throughput comparison."""

    def __init__(
        self, export_dir: str | Path, intra_op_threads: int = 0, engine: str = "onnxruntime", precision: str = "fp32"
    ):
        from search_backends.product_onnx import ProductOnnxModels

        self.models = ProductOnnxModels(
            export_dir, intra_op_threads=intra_op_threads, engine=engine, precision=precision
        )
        self.export_dir = Path(export_dir)
        self.engine, self.precision = engine, self.models.encoder.precision

    async def identity(self) -> dict:
        from search_build.repository.artifacts import folder_sha256

        return {
            "onnx_dir": str(self.export_dir.resolve()),
            "artifact_sha256": folder_sha256(self.export_dir),
            **({"engine": self.engine} if self.engine != "onnxruntime" else {}),
            **({"precision": self.precision} if self.precision != "fp32" else {}),
        }

    async def score(self, rows: Sequence[Row]) -> np.ndarray:
        columns = [[row.fields[c] for row in rows] for c in range(len(FIELDS))]
        # ONNX Runtime releases the GIL: run in a thread so the event loop keeps reading/writing.
        return await asyncio.to_thread(self.models.score_pairs, *columns)

    def is_transient(self, error: BaseException) -> bool:
        return False

    async def close(self) -> None:
        pass
