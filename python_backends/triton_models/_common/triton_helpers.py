"""Glue shared by the Python-backend adapters (copied next to each model.py at build time)."""

from __future__ import annotations

import json
import sys
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from search_backends.model_parameters import int_parameter
from search_backends.text_input import InputError, decode_text


_MODEL_NAME = {"name": None}  # one model per stub process: named in error replies


@dataclass(frozen=True)
class ModelSetup:
    """What an adapter's ``initialize`` reads from Triton's ``args``."""

    config: dict  # the model's config, as JSON
    params: dict[str, str]  # its string parameters
    dtypes: dict[str, np.dtype]  # numpy type of each output
    folder: Path  # the version folder: the model's files


def model_setup(args: dict) -> ModelSetup:
    _MODEL_NAME["name"] = args.get("model_name") or _MODEL_NAME["name"]
    config = json.loads(args["model_config"])
    folder = Path(args["model_repository"]) / args["model_version"]
    return ModelSetup(config, parameters(config), output_dtypes(config), folder)


def parameters(config: dict) -> dict[str, str]:
    return {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}


def sibling_model(setup: ModelSetup, name: str) -> tuple[Path, dict[str, str]]:
    """Another model of this model's repository: its version folder (same version) and string parameters, read
    from its config.pbtxt. For a stage that runs that model's files in its own process; the files and settings
    stay the other model's, so both compute the same thing."""
    from search_backends.model_parameters import config_string_parameters

    model_dir = setup.folder.parent.parent / name
    config_path, folder = model_dir / "config.pbtxt", model_dir / setup.folder.name
    if not config_path.is_file() or not folder.is_dir():
        raise FileNotFoundError(
            f"{_MODEL_NAME['name']} runs {name}'s files, but {model_dir} has no config or version {folder.name}"
        )
    return folder, config_string_parameters(config_path.read_text(encoding="utf-8"))


def engine_threads(config: dict) -> int:
    """ONNX Runtime intra-op threads for one instance of this model: the ``intra_op_threads``
    parameter, or with 0 ("auto") the cores shared between its instances (each its own stub)."""
    from search_backends.graph_engines import THREADS_PARAMETER
    from search_backends.onnx_runner import threads_per_instance  # not at import: tokenizer stubs need no ONNX Runtime

    instances = sum(int(g.get("count", 1)) for g in config.get("instance_group", [])) or 1
    return threads_per_instance(int_parameter(parameters(config), THREADS_PARAMETER, 0, minimum=0), instances)


def output_dtypes(config: dict) -> dict[str, np.dtype]:
    return {o["name"]: pb_utils.triton_string_to_numpy(o["data_type"]) for o in config["output"]}


def error_response(message: str, code: int | None = None) -> "pb_utils.InferenceResponse":
    error = pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)
    return pb_utils.InferenceResponse(output_tensors=[], error=error)


def input_error_response(message: str) -> "pb_utils.InferenceResponse":
    """An error caused by the request itself: the client sees INVALID_ARGUMENT (HTTP 400), not INTERNAL."""
    return error_response(message, getattr(pb_utils.TritonError, "INVALID_ARG", None))


def tensor_or_none(request, name: str):
    t = pb_utils.get_input_tensor_by_name(request, name)
    return None if t is None else t.as_numpy()


def gather_texts(requests, name: str):
    """Decode one text input of every request into a flat list, for a single batched call.

    Returns ``(texts, spans, responses)``: ``spans`` holds ``(request index, start, stop)`` into
    ``texts``; a request with missing or invalid text already has its error in ``responses`` and no span.
    """
    responses, texts, spans = [None] * len(requests), [], []
    for i, request in enumerate(requests):
        values = tensor_or_none(request, name)
        try:
            if values is None or values.size == 0:
                raise InputError(f"{name}: missing input")
            decoded = [decode_text(v, field=name) for v in values.reshape(-1)]
        except InputError as exc:
            responses[i] = input_error_response(str(exc))
            continue
        spans.append((i, len(texts), len(texts) + len(decoded)))
        texts.extend(decoded)
    return texts, spans, responses


utf8 = np.vectorize(lambda s: s.encode("utf-8"), otypes=[np.object_])  # str array -> BYTES tensor contents


def respond(outputs: dict[str, np.ndarray], dtypes: dict[str, np.dtype]) -> "pb_utils.InferenceResponse":
    return pb_utils.InferenceResponse(
        [pb_utils.Tensor(name, np.ascontiguousarray(value, dtype=dtypes.get(name))) for name, value in outputs.items()]
    )


def internal_error_response(owner, exc: BaseException) -> "pb_utils.InferenceResponse":
    """The client gets the model's name and a reference only; the exception (paths, values, library internals)
    goes to the server log under that reference."""
    reference = uuid.uuid4().hex[:12]
    pb_utils.Logger.log_error(
        f"{owner.__class__.__module__} [{reference}]: {type(exc).__name__}: {exc}\n"
        f"{''.join(traceback.format_exception(exc))}"
    )
    model = _MODEL_NAME["name"] or owner.__class__.__module__
    return error_response(f"internal error in {model} (reference {reference}; details in the server log)")


def _senders_with_errors_sent(requests, responses) -> list:
    """Every request's response sender; the ``responses`` already set (input errors) are sent now, as final."""
    senders = [request.get_response_sender() for request in requests]
    for sender, response in zip(senders, responses):
        if response is not None:
            sender.send(response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
    return senders


def _answer_through(owner, sender, build):
    """``answer(result, error)`` sending one final response: ``build(result)``, UNAVAILABLE for a shed request,
    or an internal error with a reference."""
    from search_backends.admission import Overloaded

    def answer(result, error):
        try:
            if isinstance(error, Overloaded):
                response = error_response(str(error), getattr(pb_utils.TritonError, "UNAVAILABLE", None))
            elif error is not None:
                response = internal_error_response(owner, error)
            else:
                response = build(result)
        except Exception as exc:  # noqa: BLE001 - the request must still be answered
            response = internal_error_response(owner, exc)
        sender.send(response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    return answer


def respond_in_flight(owner, requests, responses, kept, submit, build) -> None:
    """``execute`` for a model that answers later (in-flight decoding): returns None, and every request gets
    exactly one final response through its response sender (Python backend default mode, 24.06+).

    ``responses[i]`` already set (input errors) go out now; ``submit(answers)`` hands the ``kept`` requests to
    the scheduler with one ``answer(result, error)`` each, which sends ``build(result)`` or the error."""
    senders = _senders_with_errors_sent(requests, responses)
    answers = [_answer_through(owner, senders[i], build) for i in kept]
    try:
        submit(answers)
    except Exception as exc:  # noqa: BLE001 - nothing was queued: answer every kept request now
        for answer in answers:
            answer(None, exc)
    return None


def admission_queue(
    setup: ModelSetup, compute, warm_up_payload, max_rows: int | None = None, spread_margin: float = 0.0
):
    """The stage's :class:`~search_backends.admission.AdmissionQueue` when its config asks for load shedding
    (``shed_wait_ms`` > 0), else None. ``compute(payloads)`` is the stage's vectorised call; its cost is measured
    here on ``warm_up_payload(rows)`` (which also warms the engine up). ``max_rows``: the most cost units a batch
    holds (default: the config's max_batch_size); ``spread_margin``: see AdmissionQueue (content-priced stages)."""
    from search_backends.admission import GIL_SWITCH_S, SHED_WAIT_PARAMETER, AdmissionQueue, BatchCost

    wait_ms = int_parameter(setup.params, SHED_WAIT_PARAMETER, 0, minimum=0)
    if not wait_ms:
        return None
    max_rows = max_rows or int(setup.config.get("max_batch_size", 0)) or 1
    # A refusal is answered from ``execute`` while the worker thread runs batches, partly in Python (the search
    # bar's guard). At the default 5 ms GIL switch interval a refusal could wait several switches for the GIL.
    sys.setswitchinterval(GIL_SWITCH_S)
    cost = BatchCost.measure(lambda rows: compute(warm_up_payload(rows)), max_rows)
    pb_utils.Logger.log_info(
        f"{_MODEL_NAME['name']}: load shedding past {wait_ms} ms from arrival to answer; batch cost "
        f"{1000 * cost.fixed:.2f} ms + {1000 * cost.per_row:.3f} ms/row"
    )
    return AdmissionQueue(
        compute, cost, max_wait_s=wait_ms / 1000.0, max_batch_rows=max_rows, spread_margin=spread_margin
    )


def respond_admitted(owner, requests, responses, kept, admission, build) -> None:
    """``execute`` for a stage that sheds load: returns None; every request gets exactly one final response
    through its response sender. ``responses[i]`` already set (input errors) go out now; each ``(i, payload,
    rows)`` of ``kept`` is offered to ``admission``: refused ones are answered UNAVAILABLE at once, the others
    with ``build(result)`` when their batch has run."""
    senders = _senders_with_errors_sent(requests, responses)
    for i, payload, rows in kept:
        answer = _answer_through(owner, senders[i], build)
        try:
            if not admission.offer(payload, rows, answer):
                answer(None, admission.refusal(rows))
        except Exception as exc:  # noqa: BLE001 - not queued: answer it now
            answer(None, exc)
    return None


def guarded(execute):
    """Turn an unexpected exception in a batch into per-request errors instead of a dead batch."""

    def wrapper(self, requests):
        try:
            return execute(self, requests)
        except Exception as exc:  # noqa: BLE001 - the server must keep answering
            return [internal_error_response(self, exc) for _ in requests]

    return wrapper


def guarded_async(execute):
    """:func:`guarded` for ``async def execute`` (models awaiting BLS calls)."""

    async def wrapper(self, requests):
        try:
            return await execute(self, requests)
        except Exception as exc:  # noqa: BLE001 - the server must keep answering
            return [internal_error_response(self, exc) for _ in requests]

    return wrapper
