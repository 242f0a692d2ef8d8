"""A stand-in for `triton_python_backend_utils`, so adapters (`triton_models/*/model.py`) run without a server.

Only what the adapters use: tensors, requests with parameters and response senders, responses with errors, the
logger.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np

MODELS = Path(__file__).resolve().parents[2] / "python_backends" / "triton_models"


class TritonError(Exception):
    INTERNAL, INVALID_ARG, UNAVAILABLE = 13, 3, 14

    def __init__(self, message, code=13):
        super().__init__(message)
        self.message, self.code = message, code  # the real class has message(); tests read the text


class Tensor:
    def __init__(self, name, array):
        self._name, self._array = name, np.asarray(array)

    def name(self):
        return self._name

    def as_numpy(self):
        return self._array


class InferenceResponse:
    def __init__(self, output_tensors, error=None):
        self.outputs = {t.name(): t.as_numpy() for t in output_tensors}
        self.error = error


TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1


class ResponseSender:
    """Records what a model sends; ``sent`` holds (response, flags) in order."""

    def __init__(self):
        self.sent: list = []

    def send(self, response=None, flags=0):
        self.sent.append((response, flags))


class Request:
    def __init__(self, inputs: dict, parameters: dict | None = None):
        self.inputs = {k: Tensor(k, v) for k, v in inputs.items()}
        self._parameters = json.dumps(parameters or {})
        self.sender = ResponseSender()

    def parameters(self):
        return self._parameters

    def get_response_sender(self):
        return self.sender


class Logger:
    messages: list = []

    @classmethod
    def log_error(cls, message):
        cls.messages.append(message)

    log_warn = log_info = log_error


def get_input_tensor_by_name(request, name):
    return request.inputs.get(name)


_NUMPY = {
    "TYPE_STRING": np.object_,
    "TYPE_BOOL": np.bool_,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_FP32": np.float32,
    "TYPE_FP16": np.float16,
}


def triton_string_to_numpy(name):
    return _NUMPY[name]


def install() -> types.ModuleType:
    module = types.ModuleType("triton_python_backend_utils")
    for name in (
        "TritonError",
        "Tensor",
        "InferenceResponse",
        "Logger",
        "get_input_tensor_by_name",
        "triton_string_to_numpy",
        "TRITONSERVER_RESPONSE_COMPLETE_FINAL",
    ):
        setattr(module, name, globals()[name])
    sys.modules["triton_python_backend_utils"] = module
    common = str(MODELS / "_common")
    if common not in sys.path:
        sys.path.insert(0, common)
    return module


def load_adapter(name: str) -> types.ModuleType:
    """Import triton_models/<name>/model.py as a fresh module (each adapter has its own model.py)."""
    spec = importlib.util.spec_from_file_location(f"adapter_{name}", MODELS / name / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def answers_through_senders(requests, timeout: float = 30.0) -> list:
    """The one final response each request got through its sender (a model that answers later: in-flight decoding,
    load shedding), waiting up to ``timeout`` seconds; fails when a request got none or more than one."""
    import time

    deadline = time.monotonic() + timeout
    while any(not r.sender.sent for r in requests) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [len(r.sender.sent) for r in requests] == [1] * len(requests), [len(r.sender.sent) for r in requests]
    assert all(flags == TRITONSERVER_RESPONSE_COMPLETE_FINAL for r in requests for _, flags in r.sender.sent)
    return [r.sender.sent[0][0] for r in requests]
