"""Direct calls to the encoder engines (composing models) with out-of-range ids, over-long rows or bad masks:
a per-request INVALID_ARGUMENT naming the tensor, and the requests batched with them answered as when alone."""

from __future__ import annotations

import concurrent.futures as cf

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from support.serving import SERVED_PIPELINES, string_input
from search_backends.contracts import product_search as P
from search_backends.contracts import query_embedding as Q
from search_build.pipelines import build_pipeline

ENGINES = {Q.QUERY_EMBEDDING: Q.ENCODER, P.DUPLICATE: P.ENCODER}
# One entry request per pipeline, and the output compared (batched with bad direct calls vs alone).
ENTRY_TEXT = {
    Q.QUERY_EMBEDDING: ({Q.TEXT: "lofi beats"}, Q.EMBEDDING),
    P.DUPLICATE: ({P.A_TITLE: "usb c cable 2m", P.B_TITLE: "usb-c cable, 2 m"}, P.SCORE),
}


@pytest.mark.parametrize("pipeline", list(ENGINES))
def test_every_encoder_engine_carries_its_rules(pipeline):
    engine = build_pipeline(pipeline).model(ENGINES[pipeline])
    assert engine.max_sequence_length >= 64 and engine.value_ranges["input_ids"][1] > 1000
    assert set(engine.value_ranges) == {t.name for t in engine.inputs}


def _ints(name, array):
    t = grpcclient.InferInput(name, list(array.shape), "INT64")
    t.set_data_from_numpy(np.ascontiguousarray(array, np.int64))
    return t


@pytest.mark.parametrize("pipeline", list(ENGINES))
def test_direct_bad_engine_requests_fail_alone(grpc_client, pipeline):
    if pipeline not in SERVED_PIPELINES:
        pytest.skip(f"{pipeline} not served")
    engine = build_pipeline(pipeline).model(ENGINES[pipeline])
    if engine.tokenizer is not None:
        pytest.skip("the local target fuses this engine's tokenizer: it takes TEXT, not ids (test_bad_input)")
    names = [t.name for t in engine.inputs]
    vocab = engine.value_ranges["input_ids"][1]

    def feed(ids, mask=None):
        mask = np.ones_like(ids) if mask is None else mask
        values = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        return [_ints(n, values[n]) for n in names]

    good_ids = np.array([[101, 2000, 3000, 102]])
    bad = [
        (feed(np.array([[101, vocab + 5, 102]])), "input_ids"),
        (feed(np.full((1, engine.max_sequence_length + 8), 1000)), "input_ids"),
        (feed(good_ids, np.array([[1, 1, 7, 1]])), "attention_mask"),
    ]
    fields, out = ENTRY_TEXT[pipeline]

    def entry_inputs():
        return [string_input(grpcclient, name, [value]) for name, value in fields.items()]

    alone = grpc_client.infer(ENGINES[pipeline], feed(good_ids)).as_numpy(engine.outputs[0].name)
    entry_alone = grpc_client.infer(pipeline, entry_inputs())

    def bad_call(inputs):
        with pytest.raises(InferenceServerException) as info:
            grpc_client.infer(ENGINES[pipeline], inputs)
        return info.value

    with cf.ThreadPoolExecutor(8) as pool:
        errors = [(pool.submit(bad_call, inputs), name) for inputs, name in bad]
        goods = [pool.submit(grpc_client.infer, ENGINES[pipeline], feed(good_ids)) for _ in range(3)]
        entries = [pool.submit(grpc_client.infer, pipeline, entry_inputs()) for _ in range(3)]
        for future, name in errors:
            err = future.result()
            assert "INVALID_ARG" in str(err.status()) and name in err.message(), err.message()
        for g in goods:
            np.testing.assert_allclose(g.result().as_numpy(engine.outputs[0].name), alone, atol=1e-5)
        for e in entries:
            np.testing.assert_allclose(e.result().as_numpy(out), entry_alone.as_numpy(out), atol=1e-5)
