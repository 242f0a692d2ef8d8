"""spell_generate's request handling without an engine (search_backends.spell_decoding.ServedDecoding with a fake
decoder) and the seq2seq_generate adapter over it with the mocked pb_utils: fast, no server, no export."""

from __future__ import annotations

import numpy as np
import pytest

from search_backends.contracts.spell_correct import ATTENTION_MASK, CONTROL_DTYPES, INPUT_IDS, NUM_BEAMS, OUTPUT_IDS
from search_backends.engine_inputs import EngineInputRules
from search_backends.generation_controls import ControlLimits
from search_backends.spell_decoding import ServedDecoding
from search_backends.spell_generation import GenerationDefaults
from search_backends.text_input import InputError
from search_build.pipelines.spell_correct import DEFAULT_CHECKPOINT

PAD = 1


class EchoDecoder:
    """Answers each row with its attended ids reversed (so lengths differ per row); records its calls."""

    def __init__(self):
        self.calls = []

    def decode(self, ids, mask, params):
        self.calls.append((ids, mask, list(params)))
        return [row[m == 1][::-1].tolist() for row, m in zip(ids, mask)]

    def check(self, params):
        pass


@pytest.fixture
def decoding() -> ServedDecoding:
    rules = EngineInputRules(16, {INPUT_IDS: (0, 100), ATTENTION_MASK: (0, 2)})
    return ServedDecoding(
        EchoDecoder(), GenerationDefaults.from_model_dir(DEFAULT_CHECKPOINT), ControlLimits(), rules, PAD
    )


def _rows(*rows):
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), PAD, np.int64)
    mask = np.zeros((len(rows), width), np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = r, 1
    return ids, mask


def test_token_rows_checks_a_direct_callers_input(decoding):
    ids, mask = decoding.token_rows(*(a.astype(np.int32) for a in _rows([5, 6], [7])))
    assert ids.dtype == mask.dtype == np.int64
    for bad, message in [
        ((None, mask), "missing input"),
        ((ids, mask[:, :1]), "equal"),
        ((ids, np.zeros_like(mask)), "at least one attended token"),
        ((ids + 200, mask), "values must be in"),
        (_rows(list(range(1, 20))), "at most 16"),
    ]:
        with pytest.raises(InputError, match=message):
            decoding.token_rows(*bad)


def test_decode_requests_pads_once_and_splits_back(decoding):
    requests = [(*_rows([5, 6, 7], [8]), "a"), (*_rows([9]), "b"), (*_rows([10, 11], [12, 13], [14]), "c")]
    outputs = decoding.decode_requests(requests)
    ((ids, mask, params),) = decoding.decoder.calls  # one decoder call for the whole batch
    assert ids.shape == mask.shape == (6, 3) and params == ["a", "a", "b", "c", "c", "c"]
    assert [o.tolist() for o in outputs] == [[[7, 6, 5], [8, PAD, PAD]], [[9]], [[11, 10], [13, 12], [14, PAD]]]
    assert all(o.dtype == np.int64 for o in outputs)


def test_seq2seq_adapter_refuses_bad_requests_alone(decoding, mocked_pb_utils):
    model = mocked_pb_utils.load_adapter("seq2seq_generate").TritonPythonModel()
    model.decoding, model.dtypes = decoding, {OUTPUT_IDS: np.int64}

    def request(rows, **controls):
        ids, mask = _rows(*rows)
        inputs = {INPUT_IDS: ids, ATTENTION_MASK: mask}
        inputs.update(
            {
                name: np.array([[value]], dtype=CONTROL_DTYPES[name].lower().replace("fp", "float"))
                for name, value in controls.items()
            }
        )
        return mocked_pb_utils.Request(inputs)

    responses = model.execute(
        [
            request([[5, 6], [7]]),
            request([[8]], **{NUM_BEAMS: 0}),
            request([[9, 10]]),
            mocked_pb_utils.Request({INPUT_IDS: np.array([[5]]), ATTENTION_MASK: np.array([[0]])}),
        ]
    )
    assert [r.error is None for r in responses] == [True, False, True, False]
    assert NUM_BEAMS.lower() in responses[1].error.message.lower()
    assert responses[0].outputs[OUTPUT_IDS].tolist() == [[6, 5], [7, PAD]]
    assert responses[2].outputs[OUTPUT_IDS].tolist() == [[10, 9]]
    assert len(decoding.decoder.calls) == 1


class LaterDecoder:
    """An in-flight scheduler stand-in: keeps the submitted jobs; ``finish()`` answers them (echo rows, or an
    error for a job whose first id is 99), the way the scheduler thread does after the adapter has returned."""

    def __init__(self):
        self.submissions = []

    def submit_all(self, jobs):
        self.submissions.append(list(jobs))

    def finish(self):
        for jobs in self.submissions:
            for ids, mask, params, done in jobs:
                if ids[0, 0] == 99:
                    done(None, RuntimeError("engine fell over"))
                else:
                    done([row[m == 1][::-1].tolist() for row, m in zip(ids, mask)], None)


def test_seq2seq_adapter_in_flight_answers_every_request_once_through_its_sender(decoding, mocked_pb_utils):
    """With in-flight batching execute returns None: input errors go out at once, the rest when the scheduler
    answers, each request exactly one final response (an engine error becomes that request's error only)."""
    model = mocked_pb_utils.load_adapter("seq2seq_generate").TritonPythonModel()
    decoding.inflight = LaterDecoder()
    model.decoding, model.dtypes = decoding, {OUTPUT_IDS: np.int64}
    requests = [
        mocked_pb_utils.Request(dict(zip((INPUT_IDS, ATTENTION_MASK), _rows([5, 6], [7])))),
        mocked_pb_utils.Request({INPUT_IDS: np.array([[5]]), ATTENTION_MASK: np.array([[0]])}),
        mocked_pb_utils.Request(dict(zip((INPUT_IDS, ATTENTION_MASK), _rows([99, 3])))),
    ]
    assert model.execute(requests) is None
    assert [len(r.sender.sent) for r in requests] == [0, 1, 0]  # the bad request is answered before any decoding
    assert len(decoding.inflight.submissions) == 1 and len(decoding.inflight.submissions[0]) == 2  # one batch
    decoding.inflight.finish()
    assert [len(r.sender.sent) for r in requests] == [1, 1, 1]
    final = mocked_pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
    (good, flags), (bad, _), (failed, _) = (r.sender.sent[0] for r in requests)
    assert flags == final and good.error is None and good.outputs[OUTPUT_IDS].tolist() == [[6, 5], [7, PAD]]
    assert "attended" in bad.error.message
    assert "internal error" in failed.error.message and "engine fell over" not in failed.error.message
