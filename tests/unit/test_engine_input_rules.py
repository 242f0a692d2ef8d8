"""A local engine model's request handling (search_backends.engine_inputs.EngineInputRules.request_feed, the
batch runner) and the onnx_runner adapter over a fake engine with the mocked pb_utils: fast, no server."""

from __future__ import annotations

import numpy as np
import pytest

from search_backends.batch_runner import BatchRunner
from search_backends.contracts.product_search import ATTENTION_MASK, INPUT_IDS
from search_backends.engine_inputs import EngineInputRules
from search_backends.model_parameters import ConfigError
from search_backends.text_input import InputError

RULES = EngineInputRules(8, {INPUT_IDS: (0, 50), ATTENTION_MASK: (0, 2)})


class SumEngine:
    """[N, L] ids and mask -> [N, 1] sum of the kept ids; records the batch it ran."""

    input_names, output_names = [INPUT_IDS, ATTENTION_MASK], ["total"]
    input_dtypes = {INPUT_IDS: np.int64, ATTENTION_MASK: np.int64}

    def __init__(self):
        self.feeds = []

    def infer(self, feeds):
        self.feeds.append(feeds)
        return [(feeds[INPUT_IDS] * feeds[ATTENTION_MASK]).sum(axis=1, keepdims=True).astype(np.float32)]


def test_request_feed_names_a_missing_input_or_a_broken_rule():
    ids = np.array([[3, 4]])
    assert RULES.request_feed({INPUT_IDS: ids, ATTENTION_MASK: np.ones_like(ids)})[INPUT_IDS] is ids
    with pytest.raises(InputError, match=f"{ATTENTION_MASK}: missing input"):
        RULES.request_feed({INPUT_IDS: ids, ATTENTION_MASK: None})
    with pytest.raises(InputError, match="at most 8"):
        RULES.request_feed({INPUT_IDS: np.ones((1, 9), np.int64), ATTENTION_MASK: np.ones((1, 9), np.int64)})


def test_rules_parameters_round_trip_and_a_bad_length_names_the_key():
    assert EngineInputRules.from_parameters(RULES.to_parameters()) == RULES
    with pytest.raises(ConfigError, match="max_sequence_length"):
        EngineInputRules.from_parameters({**RULES.to_parameters(), "max_sequence_length": "8x"})


def test_batch_runner_pads_ragged_requests_once():
    engine = SumEngine()
    results = BatchRunner(engine).run(
        [
            {INPUT_IDS: np.array([[1, 2, 3]]), ATTENTION_MASK: np.array([[1, 1, 1]])},
            {INPUT_IDS: np.array([[4], [5]]), ATTENTION_MASK: np.array([[1], [1]])},
        ]
    )
    assert len(engine.feeds) == 1 and engine.feeds[0][INPUT_IDS].tolist() == [[1, 2, 3], [4, 0, 0], [5, 0, 0]]
    assert [r["total"].ravel().tolist() for r in results] == [[6.0], [4.0, 5.0]]


def test_onnx_runner_adapter_refuses_bad_requests_alone(mocked_pb_utils):
    model = mocked_pb_utils.load_adapter("onnx_runner").TritonPythonModel()
    engine = SumEngine()
    model.runner, model.rules, model.dtypes = BatchRunner(engine), RULES, {"total": np.float32}
    good = {INPUT_IDS: np.array([[1, 2]]), ATTENTION_MASK: np.array([[1, 1]])}
    responses = model.execute(
        [
            mocked_pb_utils.Request(good),
            mocked_pb_utils.Request({INPUT_IDS: good[INPUT_IDS]}),
            mocked_pb_utils.Request({**good, INPUT_IDS: np.array([[1, 99]])}),
            mocked_pb_utils.Request({INPUT_IDS: np.array([[7]]), ATTENTION_MASK: np.array([[1]])}),
        ]
    )
    assert [r.error is None for r in responses] == [True, False, False, True]
    assert "missing input" in responses[1].error.message and "values must be in" in responses[2].error.message
    assert responses[0].outputs["total"].tolist() == [[3.0]] and responses[3].outputs["total"].tolist() == [[7.0]]
    assert len(engine.feeds) == 1
