"""Config parameters the adapters read, through the search_backends helpers (names from the contracts): fast."""

from __future__ import annotations

import json

import numpy as np
import pytest

from search_backends.contracts import product_search as P
from search_backends.contracts import query_embedding as Q
from search_backends.heads import DuplicateHead, IntentHead
from search_backends.model_parameters import ConfigError
from search_backends.tokenization import BatchTokenizer
from search_build.export.sentence_checkpoint import default_embedding_checkpoint


def test_tokenizer_from_parameters_defaults_and_errors():
    folder = default_embedding_checkpoint().parent
    params = {Q.TOKENIZER_DIR_PARAMETER: default_embedding_checkpoint().name}
    tokenizer = BatchTokenizer.from_parameters(folder, params)
    assert (tokenizer.max_length, tokenizer.pad_to_multiple_of) == (Q.DEFAULT_MAX_LENGTH, Q.DEFAULT_PAD_TO_MULTIPLE)
    tokenizer = BatchTokenizer.from_parameters(
        folder, {**params, Q.MAX_LENGTH_PARAMETER: " 32 ", Q.PAD_TO_MULTIPLE_PARAMETER: "4"}
    )
    assert (tokenizer.max_length, tokenizer.pad_to_multiple_of) == (32, 4)
    for key, raw in (
        (Q.MAX_LENGTH_PARAMETER, "12B"),
        (Q.MAX_LENGTH_PARAMETER, "1"),
        (Q.PAD_TO_MULTIPLE_PARAMETER, "0"),
    ):
        with pytest.raises(ConfigError, match=key):
            BatchTokenizer.from_parameters(folder, {**params, key: raw})


def test_request_rows_match_a_request_encoded_alone():
    tokenizer = BatchTokenizer(default_embedding_checkpoint(), max_length=64)
    texts = ["lofi", "a much longer query about jazz piano for a quiet dinner at home tonight", "rock"]
    batch = tokenizer.encode(texts)
    for start, stop in ((0, 1), (1, 3), (2, 3)):
        alone, rows = tokenizer.encode(texts[start:stop]), batch.request_rows(start, stop, tokenizer.pad_to_multiple_of)
        for name in P.IDS:
            np.testing.assert_array_equal(getattr(rows, name), getattr(alone, name))


@pytest.fixture(scope="module")
def head_folder(tmp_path_factory):
    """Tiny head graphs (linear maps over a 4-d pooled embedding) and a labels file, as the head models hold them."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder = tmp_path_factory.mktemp("heads")
    rng = np.random.default_rng(0)
    for name, out in (("intent.onnx", 3), ("duplicate.onnx", 1)):
        weight = numpy_helper.from_array(rng.normal(size=(4, out)).astype(np.float32), "weight")
        graph = helper.make_graph(
            [helper.make_node("MatMul", [P.POOLED_EMBEDDING, "weight"], ["logits"])],
            "head",
            [helper.make_tensor_value_info(P.POOLED_EMBEDDING, TensorProto.FLOAT, ["batch", 4])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", out])],
            [weight],
        )
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), folder / name)
    (folder / P.LABELS_FILE).write_text(json.dumps({"0": "media", "1": "help", "2": "shop"}))
    return folder


def test_heads_from_parameters(head_folder):
    head = IntentHead.from_parameters(head_folder, {P.HEAD_FILE_PARAMETER: "intent.onnx"})
    assert head.default_top_k == P.DEFAULT_TOP_K
    assert (
        IntentHead.from_parameters(
            head_folder, {P.HEAD_FILE_PARAMETER: "intent.onnx", P.TOP_K_PARAMETER: "1"}
        ).default_top_k
        == 1
    )
    with pytest.raises(ConfigError, match=P.TOP_K_PARAMETER):
        IntentHead.from_parameters(head_folder, {P.HEAD_FILE_PARAMETER: "intent.onnx", P.TOP_K_PARAMETER: "x"})
    pooled = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    (prediction,) = head.predict(pooled, [(0, 5, 2)])
    assert set(prediction.outputs()) == set(P.INTENT_OUTPUTS) and prediction.top_labels.shape == (5, 2)
    scores = DuplicateHead.from_parameters(head_folder, {P.HEAD_FILE_PARAMETER: "duplicate.onnx"}).predict(pooled)
    assert scores.shape == (5, 1) and scores.dtype == np.float32 and ((scores > 0) & (scores < 1)).all()


def test_head_adapters_answer_each_request(head_folder, mocked_pb_utils):
    """intent_head: a bad TOP_K fails alone, each request keeps its k; duplicate_head: rows split back per request."""

    def load(adapter, head_file, outputs):
        config = {
            "output": [{"name": n, "data_type": t} for n, t in outputs],
            "parameters": {P.HEAD_FILE_PARAMETER: {"string_value": head_file}},
        }
        model = mocked_pb_utils.load_adapter(adapter).TritonPythonModel()
        model.initialize(
            {
                "model_config": json.dumps(config),
                "model_repository": str(head_folder.parent),
                "model_version": head_folder.name,
            }
        )
        return model

    rng = np.random.default_rng(1)
    pooled = [rng.normal(size=(n, 4)).astype(np.float32) for n in (2, 1, 3)]
    intent = load(
        "intent_head",
        "intent.onnx",
        [
            (P.LABEL, "TYPE_STRING"),
            (P.PROBABILITIES, "TYPE_FP32"),
            (P.TOP_LABELS, "TYPE_STRING"),
            (P.TOP_PROBABILITIES, "TYPE_FP32"),
        ],
    )
    requests = [
        mocked_pb_utils.Request({P.POOLED_EMBEDDING: pooled[0]}),
        mocked_pb_utils.Request({P.POOLED_EMBEDDING: pooled[1], P.TOP_K: np.array([[9]], np.int32)}),
        mocked_pb_utils.Request({P.POOLED_EMBEDDING: pooled[2], P.TOP_K: np.array([[1]] * 3, np.int32)}),
    ]
    responses = intent.execute(requests)
    assert responses[1].error is not None and P.TOP_K in responses[1].error.message
    assert responses[0].outputs[P.TOP_LABELS].shape == (2, P.DEFAULT_TOP_K)
    assert responses[2].outputs[P.TOP_LABELS].shape == (3, 1)
    duplicate = load("duplicate_head", "duplicate.onnx", [(P.SCORE, "TYPE_FP32")])
    responses = duplicate.execute([mocked_pb_utils.Request({P.POOLED_EMBEDDING: p}) for p in pooled])
    want = DuplicateHead(head_folder / "duplicate.onnx").predict(np.concatenate(pooled))
    np.testing.assert_allclose(np.concatenate([r.outputs[P.SCORE] for r in responses]), want)
    assert [len(r.outputs[P.SCORE]) for r in responses] == [2, 1, 3]


def test_config_string_parameters_read_what_protobuf_writes():
    """A model running another's files reads that model's parameters from its config.pbtxt text (the stub
    environment has no Triton config proto): every string parameter, escapes and non-ASCII included, and nothing
    from the other blocks that also have keys and values (an ensemble's input_map)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    from search_backends.model_parameters import config_string_parameters
    from search_build.pipelines import build_pipeline, pipeline_names
    from search_build.repository.configs import model_config, to_pbtxt

    odd = {"plain": "spell_model", "quoted": 'say "hi"\\n', "path": "a\\b/c", "unicode": "café ☕", "empty": ""}
    config = mc.ModelConfig(name="m", backend="python")
    for key, value in odd.items():
        config.parameters[key].string_value = value
    config.ensemble_scheduling.step.add(model_name="x").input_map["TEXT"] = "TEXT"
    assert config_string_parameters(text_format.MessageToString(config)) == odd
    for name in pipeline_names():
        for model in build_pipeline(name).models:
            parsed = text_format.Parse(to_pbtxt(model_config(model, "local")), mc.ModelConfig())
            want = {k: v.string_value for k, v in parsed.parameters.items()}
            assert config_string_parameters(to_pbtxt(model_config(model, "local"))) == want, model.name
