"""The CTranslate2 decoding engine of spell_generate against HF ``generate()``, token for token.

Both the committed checkpoint and a random BART of another shape (forced BOS/EOS like the checkpoint, so the
one-token target prefix and the length mapping are exercised on a model whose BOS probability is not ~1).
Rows CTranslate2 cannot match go to the exact numpy loop; the tests count them, so a mapping that silently
widens the fallback (slower) or narrows it (different output) fails.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("ctranslate2")

from search_backends.spell_generation import GenerationDefaults, generate  # noqa: E402
from search_backends.spell_generation.ct2_engine import CTranslate2Generation, inexact_control  # noqa: E402
from search_build.export import spell_ct2, spell_export  # noqa: E402
from support.spell import (  # noqa: E402
    GENERATION_OPTIONS,
    QUERIES,
    SPELL_DIR,
    hf_generate,
    onnx_runner,
    padded_like,
    random_bart,
    spell_inputs,
    spell_tokenizer,
)


def random_bart_with_spell_vocabulary(path):
    """Another BART shape over the checkpoint's byte vocabulary, with forced BOS/EOS like the checkpoint."""
    random_bart(path, vocab_size=len(spell_tokenizer()), seed=4321, forced_bos_token_id=0, forced_eos_token_id=2)
    spell_tokenizer().save_pretrained(path)
    return path


class CountingLoop:
    """The exact numpy loop over ONNX Runtime, counting the rows sent to it."""

    def __init__(self, onnx_dir):
        self.runner, self.rows = onnx_runner(onnx_dir), 0

    def __call__(self, ids, mask, params):
        self.rows += len(ids)
        return generate(self.runner.encode, self.runner.decode_step, ids, mask, params)


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    """{name: (HF model, checkpoint dir, CTranslate2Generation, CountingLoop)}."""
    base = tmp_path_factory.mktemp("ct2")
    out = {}
    for name, checkpoint in (("spell", SPELL_DIR), ("random", random_bart_with_spell_vocabulary(base / "random"))):
        ct2_dir = spell_ct2.converted_model(checkpoint)
        loop = CountingLoop(spell_export.export_checkpoint(checkpoint, base / f"{name}_onnx"))
        model = transformers.BartForConditionalGeneration.from_pretrained(checkpoint).eval()
        out[name] = (model, checkpoint, CTranslate2Generation(ct2_dir, intra_threads=1, exact=loop), loop)
    return out


def _check(engine_set, texts, options):
    model, checkpoint, engine, loop = engine_set
    params = GenerationDefaults.from_model_dir(checkpoint).resolve(**options)
    ids, mask = spell_inputs(texts)
    before = loop.rows
    ours = engine.generate(ids, mask, [params] * len(ids))
    reference = hf_generate(model, ids, mask, **options)
    np.testing.assert_array_equal(padded_like(ours, reference, params), reference, err_msg=str(options))
    at_cap = sum(len(row) == params.max_length for row in ours)  # HF forced EOS at the length cap
    return params, loop.rows - before, at_cap


@pytest.mark.parametrize("name", ["spell", "random"])
@pytest.mark.parametrize(
    "options", GENERATION_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "defaults"
)
def test_ct2_engine_equals_hf_generate(engines, name, options):
    params, exact_rows, at_cap = _check(engines[name], QUERIES, options)
    if inexact_control(params):
        assert exact_rows == len(QUERIES), "a control CTranslate2 cannot match must go to the exact loop"
    elif params.num_beams == 1:
        assert exact_rows == 0, "greedy is exact on CTranslate2: nothing should fall back"
    else:
        assert exact_rows == at_cap, "only beam rows that hit the length cap may fall back"


def test_served_defaults_run_on_ct2_alone(engines):
    """The checkpoint's own settings (beam 4, early stopping) and greedy never need the loop on real queries."""
    for options in ({}, {"num_beams": 1}, {"num_beams": 4, "length_penalty": 2.0}):
        _, exact_rows, _ = _check(engines["spell"], QUERIES, options)
        assert exact_rows == 0, options


def test_mixed_settings_in_one_batch(engines):
    model, checkpoint, engine, loop = engines["spell"]
    defaults = GenerationDefaults.from_model_dir(checkpoint)
    texts = ["beatels", "the rolling stonse", "a", "country roads take me hoem", "pianoo", "metalica"]
    options = [
        {"num_beams": 4},
        {"num_beams": 1},
        {"num_beams": 2, "max_new_tokens": 3},
        {"num_beams": 3, "no_repeat_ngram_size": 4},
        {"num_beams": 1, "min_new_tokens": 14},
        {"num_beams": 4, "early_stopping": False},
    ]
    ids, mask = spell_inputs(texts)
    params = [defaults.resolve(**o) for o in options]
    before = loop.rows
    ours = engine.generate(ids, mask, params)
    assert loop.rows - before >= 2  # the no_repeat_ngram beam and the early_stopping=False beam
    for text, o, p, row in zip(texts, options, params, ours):
        one_ids, one_mask = spell_inputs([text])
        reference = hf_generate(model, one_ids, one_mask, **o)
        np.testing.assert_array_equal(padded_like([row], reference, p), reference, err_msg=text)


def test_without_exact_loop_an_inexact_control_is_refused_by_name(engines):
    _, checkpoint, engine, _ = engines["spell"]
    bare = CTranslate2Generation(engine_dir := spell_ct2.converted_model(checkpoint), intra_threads=1)
    assert engine_dir.name.startswith("spell-ct2-")
    defaults = GenerationDefaults.from_model_dir(checkpoint)
    ids, mask = spell_inputs(["metalica"])
    for options, name in (
        ({"num_beams": 4, "early_stopping": False}, "early_stopping"),
        ({"num_beams": 3, "no_repeat_ngram_size": 2}, "no_repeat_ngram_size"),
        ({"num_beams": 2, "min_length": 9}, "min_length"),
    ):
        with pytest.raises(ValueError, match=name):
            bare.generate(ids, mask, [defaults.resolve(**options)])
    assert bare.generate(ids, mask, [defaults.resolve(num_beams=1, min_length=9)])  # greedy: exact on CT2


def test_conversion_records_its_workaround():
    import json

    notes = json.loads((spell_ct2.converted_model(SPELL_DIR) / "conversion_notes.json").read_text())
    assert notes["workarounds"] == ["config.json copy with normalize_before=false (BART is post-LayerNorm)"]
    with pytest.raises(ValueError, match="precision"):
        spell_ct2.compute_type("bf16", "cpu")


# --------------------------------------------------------------------------- the spell_generate adapter


def test_generate_adapter_decodes_the_batch_on_ct2_and_isolates_bad_requests(tmp_path, mocked_pb_utils):
    import json

    from search_backends.spell_decoding import SpellDecoder
    from search_build.repository.configs import model_config, to_pbtxt
    from search_build.pipelines import build_pipeline
    from search_build.repository.writer import write_repository

    pipeline = build_pipeline("spell_correct", fuse_text=False)
    spec = pipeline.model("spell_generate")
    repo = write_repository([pipeline], tmp_path, progress=lambda _: None)
    from google.protobuf import json_format

    config = json_format.MessageToDict(model_config(spec, "local"), preserving_proto_field_name=True)
    assert "ctranslate2" in to_pbtxt(model_config(spec, "local"))
    adapter = mocked_pb_utils.load_adapter("seq2seq_generate")
    model = adapter.TritonPythonModel()
    model.initialize(
        {"model_config": json.dumps(config), "model_repository": str(repo / "spell_generate"), "model_version": "1"}
    )
    assert model.decoding.decoder.mode == "ctranslate2"

    texts = ["metalica", "tayler swift love stroy", "beatels", "x"]
    requests, expected_params = [], []
    defaults = GenerationDefaults.from_model_dir(SPELL_DIR)
    for text, params in zip(
        texts, ({"num_beams": 1}, {}, {"num_beams": 99}, {"num_beams": 4, "early_stopping": False})
    ):
        ids, mask = spell_inputs([text])
        requests.append(mocked_pb_utils.Request({"input_ids": ids, "attention_mask": mask}, params))
        expected_params.append(params)
    ids, mask = spell_inputs(["a"])
    requests.append(mocked_pb_utils.Request({"input_ids": ids, "attention_mask": mask[:, :0]}, {}))  # bad shapes
    responses = model.execute(requests)

    assert (
        responses[2].error.code == mocked_pb_utils.TritonError.INVALID_ARG and "num_beams" in responses[2].error.message
    )
    assert responses[4].error is not None and "attention_mask" in responses[4].error.message
    loop = SpellDecoder("inprocess", repo / "spell_generate" / "1" / "spell_model", threads=1)
    for i in (0, 1, 3):
        ids, mask = spell_inputs([texts[i]])
        want = loop.decode(ids, mask, [defaults.resolve(**expected_params[i])])[0]
        got = responses[i].outputs["output_ids"][0].tolist()
        assert got[: len(want)] == want and all(t == 1 for t in got[len(want) :]), texts[i]


@pytest.mark.parametrize("shed_wait_ms", [0, 2000])
def test_fused_adapter_corrects_the_batch_in_one_call_and_isolates_bad_requests(
    tmp_path, mocked_pb_utils, shed_wait_ms
):
    """The CPU targets' one-stub spell stage (adapter spell_corrector): each good request of a mixed batch gets
    what the in-process corrector (numpy loop over ONNX Runtime) gives it alone, guard switch and controls
    included; bad text, controls or guard values fail their own request only. With load shedding on, the same
    answers come through the response senders, exactly once each."""
    import json

    from google.protobuf import json_format

    from search_backends.spell_corrector import SpellCorrector
    from search_build.repository.configs import model_config
    from search_build.pipelines import build_pipeline
    from search_build.repository.writer import write_repository

    pipeline = build_pipeline("spell_correct", shed_wait_ms=shed_wait_ms)
    spec = pipeline.model("spell_generate")
    assert spec.adapter == "spell_corrector" and [m.name for m in pipeline.models] == [
        "spell_generate",
        "spell_correct",
    ]
    repo = write_repository([pipeline], tmp_path, progress=lambda _: None)
    config = json_format.MessageToDict(model_config(spec, "local"), preserving_proto_field_name=True)
    model = mocked_pb_utils.load_adapter("spell_corrector").TritonPythonModel()
    model.initialize(
        {"model_config": json.dumps(config), "model_repository": str(repo / "spell_generate"), "model_version": "1"}
    )
    oracle = SpellCorrector(repo / "spell_generate" / "1" / "spell_model", intra_op_threads=1)

    def text(*values):
        return np.array([[v.encode()] for v in values], dtype=np.object_)

    good = [
        (text("tayler swift", "metalica enter sandman"), {}, True),
        (text("beatels yesterday"), {"num_beams": 1}, False),
        (text("classcal music for studdy"), {"num_beams": 3, "no_repeat_ngram_size": 2}, True),
        (text("bohemain rapsody"), {"num_beams": 4, "early_stopping": "never"}, False),
    ]
    requests = [mocked_pb_utils.Request({"TEXT": values}, {**params, "guard": on}) for values, params, on in good]
    bad = [
        (mocked_pb_utils.Request({"TEXT": text("   ")}), "TEXT"),
        (mocked_pb_utils.Request({"TEXT": text("adele")}, {"num_beams": 99}), "num_beams"),
        (mocked_pb_utils.Request({"TEXT": text("adele")}, {"guard": "maybe"}), "guard"),
        (mocked_pb_utils.Request({"TEXT": np.array([[b"\xff"]], dtype=np.object_)}), "UTF-8"),
    ]
    batch = [requests[0], bad[0][0], requests[1], bad[1][0], requests[2], bad[2][0], requests[3], bad[3][0]]
    responses = model.execute(batch)
    assert (model.admission is not None) == bool(shed_wait_ms)
    if shed_wait_ms:
        assert responses is None
        responses = mocked_pb_utils.answers_through_senders(batch)
        model.finalize()
    for response, (_, name) in zip(responses[1::2], bad):
        assert response.error.code == mocked_pb_utils.TritonError.INVALID_ARG and name in response.error.message
    for response, (values, params, on) in zip(responses[0::2], good):
        texts = [v[0].decode() for v in values]
        got = [v[0].decode() for v in response.outputs["CORRECTED"]]
        assert response.error is None and got == oracle.correct(texts, guard=on, **params), texts


def test_unexpected_errors_reach_clients_without_internals(tmp_path, mocked_pb_utils):
    """An exception inside execute: each request gets a reference, the log gets the exception."""
    import json

    from google.protobuf import json_format

    from search_build.repository.configs import model_config
    from search_build.pipelines import build_pipeline
    from search_build.repository.writer import write_repository

    pipeline = build_pipeline("spell_correct", fuse_text=False)
    repo = write_repository([pipeline], tmp_path, progress=lambda _: None)
    config = json_format.MessageToDict(
        model_config(pipeline.model("spell_generate"), "local"), preserving_proto_field_name=True
    )
    model = mocked_pb_utils.load_adapter("seq2seq_generate").TritonPythonModel()
    model.initialize(
        {
            "model_config": json.dumps(config),
            "model_repository": str(repo / "spell_generate"),
            "model_version": "1",
            "model_name": "spell_generate",
        }
    )

    def broken(*_):
        raise RuntimeError("secret detail /srv/private/path")

    model.decoding.decoder.decode = broken
    ids, mask = spell_inputs(["metalica"])
    responses = model.execute([mocked_pb_utils.Request({"input_ids": ids, "attention_mask": mask}, {})] * 2)
    for response in responses:
        message = response.error.message
        assert "spell_generate" in message and "reference" in message and "secret" not in message, message
    reference = responses[0].error.message.split("reference ")[1].split(";")[0]
    assert any(reference in m and "secret detail" in m for m in mocked_pb_utils.Logger.messages)
