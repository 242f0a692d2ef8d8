"""The search_bar adapter in both stage modes over one written repository, with pb_utils mocked.

``inprocess`` (the local target's default) runs the stage models' files in its own stub; ``bls`` calls the stage
models. Here each BLS call is answered by that stage model's own adapter, loaded from the same repository, so
the two modes must give the same answers, request by request, bad requests included.
"""

from __future__ import annotations

import asyncio
import json
import sys

import numpy as np
import pytest
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2 as mc

from search_backends.contracts import search_bar as C
from support.serving import SERVED_PIPELINES

pytestmark = pytest.mark.skipif(C.SEARCH_BAR not in SERVED_PIPELINES, reason="search_bar not built")

QUERIES = ["metalica enter sandman", "tayler swift love story", "lofi beats to study", "wireless headphones"]


def _config(repository, name: str) -> dict:
    config = text_format.Parse((repository / name / "config.pbtxt").read_text(), mc.ModelConfig())
    return json_format.MessageToDict(config, preserving_proto_field_name=True)


def _load(mocked_pb_utils, repository, name: str, adapter: str, config: dict | None = None):
    model = mocked_pb_utils.load_adapter(adapter).TritonPythonModel()
    args = {"model_config": json.dumps(config or _config(repository, name)), "model_name": name, "model_version": "1"}
    model.initialize({**args, "model_repository": str(repository / name)})
    return model


def _one_step(repository, entry: str) -> tuple[dict, dict]:
    """An entry's tensor renames: (entry input -> stub input, stub output -> entry output); none for a stub."""
    steps = _config(repository, entry).get("ensemble_scheduling", {}).get("step", [])
    if not steps:
        return {}, {}
    assert len(steps) == 1, f"{entry}: one stub behind the entry"
    return {v: k for k, v in steps[0]["input_map"].items()}, dict(steps[0]["output_map"])


def _answer_bls_with(pb, monkeypatch, repository, adapters: dict) -> None:
    """``pb_utils.InferenceRequest(model_name=entry, ...)`` answered by ``adapters[entry].execute``: each entry is
    an ensemble of one stub (or the stub itself), so the stub's adapter answers, under the entry's tensor names."""
    renames = {entry: _one_step(repository, entry) for entry in adapters}

    class Response:
        def __init__(self, response):
            self.response = response

        def has_error(self):
            return self.response.error is not None

        def error(self):  # the real TritonError's accessors (the stand-in keeps plain attributes)
            error = self.response.error
            return type("StageError", (), {"message": lambda _: error.message, "code": lambda _: error.code})()

    class InferenceRequest:
        def __init__(self, model_name, inputs, requested_output_names):
            self.model, self.inputs = model_name, inputs

        async def async_exec(self):
            inputs, outputs = renames[self.model]
            request = pb.Request({inputs.get(t.name(), t.name()): t.as_numpy() for t in self.inputs})
            response = adapters[self.model].execute([request])[0]
            response.outputs = {outputs.get(name, name): value for name, value in response.outputs.items()}
            return Response(response)

    stand_in = sys.modules["triton_python_backend_utils"]  # what the adapters imported
    monkeypatch.setattr(stand_in, "InferenceRequest", InferenceRequest, raising=False)
    monkeypatch.setattr(
        stand_in, "get_output_tensor_by_name", lambda r, n: pb.Tensor(n, r.response.outputs[n]), raising=False
    )


def _stage_stubs(repository) -> dict[str, tuple[str, str]]:
    """search_bar's BLS entries -> (the stub model behind each, its adapter), read from the written configs."""
    params = {k: v["string_value"] for k, v in _config(repository, C.SEARCH_BAR)["parameters"].items()}
    assert params[C.PARAM_STAGES] == C.STAGES_INPROCESS, "the local target runs the stages in-process by default"
    return {
        C.SPELL_ENTRY: (params[C.PARAM_SPELL_MODEL], "spell_corrector"),
        C.INTENT_ENTRY: (params[C.PARAM_INTENT_MODEL], "text_encoder"),
        C.EMBEDDING_ENTRY: (params[C.PARAM_EMBEDDING_MODEL], "text_encoder"),
        C.CATALOG_SEARCH: (params[C.PARAM_CATALOG_MODEL], "catalog_search"),
    }


def _requests(pb):
    def text(values):
        return np.array([[v.encode()] for v in values], dtype=np.object_)

    return [
        pb.Request({C.TEXT: text(QUERIES[:2]), C.TOP_K: np.full((2, 1), 7, np.int32)}),
        pb.Request({C.TEXT: text([""])}),  # empty text: INVALID_ARGUMENT naming TEXT, the others carry on
        pb.Request(
            {
                C.TEXT: text(QUERIES[2:]),
                C.CORRECT_SPELLING: np.zeros((2, 1), bool),
                C.DETECT_INTENT: np.zeros((2, 1), bool),
            }
        ),
        pb.Request({C.TEXT: text(QUERIES[:1]), C.TOP_K: np.full((1, 1), C.MAX_TOP_K + 1, np.int32)}),
    ]


def test_in_process_stages_answer_as_the_bls_calls_do(mocked_pb_utils, model_repository, monkeypatch):
    stubs = _stage_stubs(model_repository)
    in_process = _load(mocked_pb_utils, model_repository, C.SEARCH_BAR, "search_bar")
    got = asyncio.run(in_process.execute(_requests(mocked_pb_utils)))

    adapters = {
        entry: _load(mocked_pb_utils, model_repository, stub, adapter) for entry, (stub, adapter) in stubs.items()
    }
    bls_config = _config(model_repository, C.SEARCH_BAR)
    bls_config["parameters"][C.PARAM_STAGES] = {"string_value": C.STAGES_BLS}
    _answer_bls_with(mocked_pb_utils, monkeypatch, model_repository, adapters)
    bls = _load(mocked_pb_utils, model_repository, C.SEARCH_BAR, "search_bar", bls_config)
    want = asyncio.run(bls.execute(_requests(mocked_pb_utils)))

    for i in (1, 3):
        for response in (got[i], want[i]):
            assert response.error.code == mocked_pb_utils.TritonError.INVALID_ARG
        assert got[i].error.message == want[i].error.message
        assert (C.TEXT if i == 1 else C.TOP_K) in got[i].error.message
    for i in (0, 2):
        assert got[i].error is None and want[i].error is None, mocked_pb_utils.Logger.messages[-1:]
        assert sorted(got[i].outputs) == sorted(want[i].outputs)
        for name, value in want[i].outputs.items():
            if value.dtype == np.object_:
                assert got[i].outputs[name].tolist() == value.tolist(), name
            else:
                np.testing.assert_allclose(got[i].outputs[name], value, atol=1e-5, err_msg=name)
    corrected = [v[0].decode() for v in got[0].outputs[C.CORRECTED]]
    assert corrected[0] != QUERIES[0], "the misspelled query is corrected"
    assert [v[0].decode() for v in got[2].outputs[C.CORRECTED]] == QUERIES[2:], "CORRECT_SPELLING=false"
    assert got[0].outputs[C.ITEM_IDS].shape == (2, 7) and not got[2].outputs[C.INTENT_PROBABILITIES].any()
    in_process.finalize()


def test_shedding_with_bls_stages_is_refused_before_anything_runs(mocked_pb_utils, model_repository):
    """The admission queue prices a batch by timing the bar; with BLS stages that timing would say nothing (and
    would call models at start-up), so the adapter refuses the setting before timing anything."""
    from search_backends.admission import SHED_WAIT_PARAMETER

    config = _config(model_repository, C.SEARCH_BAR)
    config["parameters"][C.PARAM_STAGES] = {"string_value": C.STAGES_BLS}
    config["parameters"][SHED_WAIT_PARAMETER] = {"string_value": "100"}
    with pytest.raises(ValueError, match=SHED_WAIT_PARAMETER):
        _load(mocked_pb_utils, model_repository, C.SEARCH_BAR, "search_bar", config)
