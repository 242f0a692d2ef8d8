"""spell_correct served by a real tritonserver: with the guard off it equals Hugging Face generate() token for
token; with the guard on (the default) it equals the in-process guard applied to that HF output."""

from __future__ import annotations


import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from support.serving import SERVED_PIPELINES, string_input
from search_backends.contracts.spell_correct import LENGTH_PENALTY, MIN_LENGTH, NO_REPEAT_NGRAM_SIZE, NUM_BEAMS
from search_build.pipelines.spell_correct import DEFAULT_CHECKPOINT
from support.project import PROJECT_ROOT

pytestmark = pytest.mark.skipif("spell_correct" not in SERVED_PIPELINES, reason="spell_correct not served in this run")

INPUTS = [
    "tayler swift",
    "beetles yesterday",
    "metalica enter sandman",
    "classcal music for studdy",
    "hello",
    "lofi beats to studdy",
    "the weekend blinding lihgts",
    "bohemain rapsody",
    "ed sheren perfect",
    "a",
    "coldplay",
    "rain sounds for sleping",
    "billie elish bad guy",
    "jazz pianno",
    "acoustic covr songs",
    "drake gods plan",
    "niravna smells like teen spirit",
    "mozart for babys",
    "happy birthday song",
    "80s synthwave",
    "adele someone like yuo",
    "chill hop",
    "workout playlist",
    "reggae bob marly",
    "frank ocean blond",
    "imagine dragons beliver",
    "vivaldi four seasons sprng",
    "kendrik lamar humble",
    "piano",
    "study music without lyrics and with some rain in the background please",
    "Tayler   SWIFT  ",  # normalisation: case and spaces
]


@pytest.fixture(scope="module")
def hf():
    import torch
    from transformers import AutoTokenizer, BartForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(DEFAULT_CHECKPOINT)
    model = BartForConditionalGeneration.from_pretrained(DEFAULT_CHECKPOINT).eval()

    from search_backends.spell_codec import SpellTextCodec

    codec = SpellTextCodec(DEFAULT_CHECKPOINT)

    def generate(texts, **options):
        # The documented truncation rule decides what the model sees; the oracle sees the same head.
        prepared = codec.prepare(texts)
        batch = tokenizer([head for head, _ in prepared], return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(**batch, **options)
        heads = tokenizer.batch_decode(out, skip_special_tokens=True)
        return [" ".join(filter(None, (h, tail))) for h, (_, tail) in zip(heads, prepared)]

    return generate


def _correct(client, texts, params=None, inputs=(), guard=False):
    """Raw model output unless `guard`: the parity tests below compare with HF generate()."""
    params = {**(params or {}), "guard": guard}
    result = client.infer("spell_correct", [string_input(grpcclient, "TEXT", texts), *inputs], parameters=params)
    return [v[0].decode("utf-8") for v in result.as_numpy("CORRECTED")]


def _int_input(name, value, dtype="INT32", np_dtype=np.int32, rows=1):
    tensor = grpcclient.InferInput(name, [rows, 1], dtype)
    tensor.set_data_from_numpy(np.full((rows, 1), value, dtype=np_dtype))
    return tensor


@pytest.mark.parametrize("num_beams", [1, 4])
def test_single_requests_match_hf_generate(grpc_client, hf, num_beams):
    got = [_correct(grpc_client, [t], {"num_beams": num_beams})[0] for t in INPUTS]
    want = [hf([t], num_beams=num_beams)[0] for t in INPUTS]
    assert got == want


def test_default_decoding_comes_from_generation_config(grpc_client, hf):
    # generation_config.json of the checkpoint sets the defaults (num_beams among them).
    assert _correct(grpc_client, INPUTS[:10]) == [hf([t])[0] for t in INPUTS[:10]]


def test_concurrent_mixed_requests_decode_together_and_match(http_client, hf):
    """Short and long inputs, greedy and beam requests arriving together share decoding steps."""
    jobs = [(t, 1 if i % 2 else 4) for i, t in enumerate(INPUTS)]
    futures = [
        http_client.async_infer(
            "spell_correct", [string_input(httpclient, "TEXT", [t])], parameters={"num_beams": b, "guard": False}
        )
        for t, b in jobs
    ]
    got = [f.get_result().as_numpy("CORRECTED")[0][0].decode() for f in futures]
    want = [hf([t], num_beams=b)[0] for t, b in jobs]
    assert got == want
    stats = http_client.get_inference_statistics("spell_generate")["model_stats"][0]
    assert int(stats["execution_count"]) < int(stats["inference_count"]), "no two requests were decoded together"


def test_controls_by_optional_inputs(grpc_client, hf):
    text = ["classcal music for studdy"]
    inputs = [
        _int_input(NUM_BEAMS, 4),
        _int_input(NO_REPEAT_NGRAM_SIZE, 2),
        _int_input(MIN_LENGTH, 3),
        _int_input(LENGTH_PENALTY, 0.5, "FP32", np.float32),
    ]
    assert _correct(grpc_client, text, inputs=inputs) == hf(
        text, num_beams=4, no_repeat_ngram_size=2, min_length=3, length_penalty=0.5
    )
    assert _correct(grpc_client, text, {"num_beams": 4, "max_new_tokens": 3}) == hf(text, num_beams=4, max_new_tokens=3)
    assert _correct(grpc_client, text, {"num_beams": 3, "early_stopping": "never"}) == hf(
        text, num_beams=3, early_stopping="never"
    )


def test_multi_row_request(grpc_client, hf):
    rows = INPUTS[:6]
    assert _correct(grpc_client, rows, {"num_beams": 4}) == [hf([t], num_beams=4)[0] for t in rows]
    # As inputs, a control has one row per text (Triton gives every input of a request the same batch size); one
    # request is one setting, so its rows must agree.
    by_input = _correct(grpc_client, rows, inputs=[_int_input(NUM_BEAMS, 1, rows=len(rows))])
    assert by_input == [hf([t], num_beams=1)[0] for t in rows]
    mixed = grpcclient.InferInput(NUM_BEAMS, [2, 1], "INT32")
    mixed.set_data_from_numpy(np.array([[1], [4]], dtype=np.int32))
    with pytest.raises(InferenceServerException) as info:
        _correct(grpc_client, rows[:2], inputs=[mixed])
    assert "INVALID_ARG" in str(info.value.status()) and NUM_BEAMS in info.value.message()


def test_text_beyond_model_limit_keeps_the_tail(grpc_client, hf):
    from search_backends.spell_codec import SpellTextCodec

    long = " ".join(["tayler swift love storry"] * 40)
    head, tail = SpellTextCodec(DEFAULT_CHECKPOINT).split_to_fit(long)
    assert head and tail and long == f"{head} {tail}"
    out = _correct(grpc_client, [long])[0]
    assert out.endswith(" " + tail)  # words beyond the model limit pass through unchanged
    assert out == hf([long])[0]


@pytest.mark.parametrize(
    "params, message",
    [
        ({"num_beams": 0}, "num_beams"),
        ({"num_beams": 1000}, "num_beams"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"early_stopping": "sometimes"}, "early_stopping"),
    ],
)
def test_invalid_controls_get_clear_errors(grpc_client, params, message):
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match=message):
        _correct(grpc_client, ["tayler swift"], params)
    assert _correct(grpc_client, ["hello"]) == ["hello"]


# ---------------------------------------------------------------------------------------------- the guard


@pytest.fixture(scope="module")
def guard():
    from search_backends.spell_guard import SpellGuard

    found = SpellGuard.from_model_dir(DEFAULT_CHECKPOINT)
    assert found is not None, "the default checkpoint ships lexicon.tsv"
    return found


def test_guard_is_on_by_default_and_equals_the_in_process_guard(grpc_client, hf, guard):
    from search_backends.spell_codec import SpellTextCodec

    codec = SpellTextCodec(DEFAULT_CHECKPOINT)
    prepared = codec.prepare(INPUTS)
    raw_heads = hf([head for head, _ in prepared])
    want = codec.join_tails(
        [guard.apply(head, raw) for (head, _), raw in zip(prepared, raw_heads)], [tail for _, tail in prepared]
    )
    result = grpc_client.infer("spell_correct", [string_input(grpcclient, "TEXT", INPUTS)])  # no guard parameter
    assert [v[0].decode() for v in result.as_numpy("CORRECTED")] == want


def test_guard_switched_off_by_input_or_parameter(grpc_client, hf):
    off = grpcclient.InferInput("GUARD", [1, 1], "BOOL")
    off.set_data_from_numpy(np.array([[False]]))
    text = ["taylor swift love story"]
    assert _correct(grpc_client, text, inputs=[off], guard=True) == hf(text)  # the input wins over the parameter
    assert _correct(grpc_client, text, guard=False) == hf(text)


def test_bad_guard_value_is_a_per_request_error(grpc_client):
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match="guard") as caught:
        grpc_client.infer("spell_correct", [string_input(grpcclient, "TEXT", ["x"])], parameters={"guard": "perhaps"})
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert _correct(grpc_client, ["jazz"], guard=True)  # and the server carries on


def test_served_corrections_equal_the_in_process_corrector_on_the_held_out_queries(triton):
    """What `searchbar eval-spell --served` measures is what the in-process corrector measures."""

    from search_backends.spell_corrector import SpellCorrector
    from search_build.pipelines.spell_correct import exported_graphs
    from search_tools.spell_eval import read_pairs, served_corrector

    pairs = read_pairs(PROJECT_ROOT / "benchmarks" / "data" / "spell_music_queries.tsv")
    queries = [q for q, _ in pairs]
    served = served_corrector(triton.grpc_url, guard=True)(queries)
    assert served == SpellCorrector(exported_graphs(DEFAULT_CHECKPOINT), intra_op_threads=1).correct(queries)
    assert sum(s == e for s, (_, e) in zip(served, pairs)) > len(pairs) // 2


@pytest.fixture(scope="module")
def bls_server(tmp_path_factory):
    """spell_correct in ``bls`` mode (the triton-gpu wiring; ONNX Runtime runners stand in for the TensorRT plans)."""
    from support.reliability import running_server, write_repo
    from search_build.pipelines.spell_correct import spell_correct_pipeline

    base = tmp_path_factory.mktemp("spell_bls")
    with running_server(write_repo([spell_correct_pipeline(engine_mode="bls")], base / "repo"), base / "log") as server:
        yield server


def test_bls_engine_mode_matches_hf_generate(bls_server, hf):
    client = grpcclient.InferenceServerClient(bls_server.grpc_url)
    for num_beams in (1, 4):
        got = [_correct(client, [t], {"num_beams": num_beams})[0] for t in INPUTS[:12]]
        assert got == [hf([t], num_beams=num_beams)[0] for t in INPUTS[:12]], num_beams
    stats = client.get_inference_statistics("spell_decoder").model_stats[0]
    assert stats.inference_count > 0, "bls mode must decode through the spell_decoder model"


def test_fused_stage_equals_the_three_stage_ensemble_with_the_guard(grpc_client, bls_server):
    """The CPU targets' one-stub spell stage and the tokenize -> generate -> detokenize ensemble answer alike,
    guard and repair included, for single and multi-row requests and mixed controls."""
    staged = grpcclient.InferenceServerClient(bls_server.grpc_url)
    for params in ({}, {"num_beams": 1}, {"num_beams": 3, "no_repeat_ngram_size": 2}):
        assert _correct(grpc_client, INPUTS, params, guard=True) == _correct(staged, INPUTS, params, guard=True)
    for text in INPUTS[:8]:
        assert _correct(grpc_client, [text], guard=True) == _correct(staged, [text], guard=True)


def test_direct_bad_token_requests_to_spell_generate_fail_alone(bls_server):
    """spell_generate takes token ids where the ensemble has three stages (here the bls wiring; the CPU
    targets' fused stage takes TEXT and is covered by test_bad_input): bad ids fail alone."""
    import concurrent.futures as cf
    import json

    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(bls_server.grpc_url)
    cfg = json.loads((DEFAULT_CHECKPOINT / "config.json").read_text())
    vocab, positions = int(cfg["vocab_size"]), int(cfg["max_position_embeddings"])

    def ints(name, array):
        t = grpcclient.InferInput(name, list(array.shape), "INT64")
        t.set_data_from_numpy(np.ascontiguousarray(array, np.int64))
        return t

    def rows(ids, mask=None):
        ids = np.array(ids)
        return [ints("input_ids", ids), ints("attention_mask", np.ones_like(ids) if mask is None else np.array(mask))]

    good = [[0, 120, 130, 140, 2]]
    alone = client.infer("spell_generate", rows(good)).as_numpy("output_ids")
    text_alone = client.infer("spell_correct", [string_input(grpcclient, "TEXT", ["tayler swift"])])

    def bad_call(inputs):
        with pytest.raises(InferenceServerException) as info:
            client.infer("spell_generate", inputs)
        return info.value

    with cf.ThreadPoolExecutor(8) as pool:
        errors = [
            (pool.submit(bad_call, rows([[0, vocab + 3, 2]])), "input_ids"),
            (pool.submit(bad_call, rows([[0] + [120] * (positions + 4) + [2]])), "input_ids"),
            (pool.submit(bad_call, rows(good, [[1, 1, 9, 1, 1]])), "attention_mask"),
        ]
        goods = [pool.submit(client.infer, "spell_generate", rows(good)) for _ in range(2)]
        texts = [
            pool.submit(client.infer, "spell_correct", [string_input(grpcclient, "TEXT", ["tayler swift"])])
            for _ in range(2)
        ]
        for future, name in errors:
            err = future.result()
            assert "INVALID_ARG" in str(err.status()) and name in err.message(), err.message()
        for g in goods:
            assert g.result().as_numpy("output_ids").tolist() == alone.tolist()
        for t in texts:
            assert t.result().as_numpy("CORRECTED").tolist() == text_alone.as_numpy("CORRECTED").tolist()


def test_direct_bad_requests_to_the_bls_engines_are_refused_by_name(bls_server):
    """spell_encoder / spell_decoder are composing models a client can reach: ids outside the vocabulary, a mask
    that is not 0/1 and rows longer than the positions get INVALID_ARGUMENT naming the tensor, and the pipeline
    still answers as before."""
    import json

    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(bls_server.grpc_url)
    cfg = json.loads((DEFAULT_CHECKPOINT / "config.json").read_text())
    vocab, positions = int(cfg["vocab_size"]), int(cfg["max_position_embeddings"])
    before = client.infer("spell_correct", [string_input(grpcclient, "TEXT", ["tayler swift"])]).as_numpy("CORRECTED")

    def ints(name, array):
        t = grpcclient.InferInput(name, list(np.shape(array)), "INT64")
        t.set_data_from_numpy(np.ascontiguousarray(array, np.int64))
        return t

    def refused(model, inputs, name):
        with pytest.raises(InferenceServerException) as info:
            client.infer(model, inputs)
        assert "INVALID_ARG" in str(info.value.status()) and name in info.value.message(), info.value.message()

    good = np.array([[0, 120, 130, 2]])
    refused("spell_encoder", [ints("input_ids", [[0, vocab + 5, 2]]), ints("attention_mask", [[1, 1, 1]])], "input_ids")
    refused("spell_encoder", [ints("input_ids", good), ints("attention_mask", [[1, 7, 1, 1]])], "attention_mask")
    too_long = np.array([[0] + [120] * (positions + 2) + [2]])
    refused("spell_encoder", [ints("input_ids", too_long), ints("attention_mask", np.ones_like(too_long))], "input_ids")
    decoder = client.get_model_metadata("spell_decoder", as_json=True)
    inputs = []
    for tensor in decoder["inputs"]:  # a well-formed first step except for the token id
        shape = [1 if d == "-1" else int(d) for d in tensor["shape"]]
        if tensor["name"] == "decoder_input_ids":
            inputs.append(ints(tensor["name"], [[vocab + 1]]))
        elif tensor["datatype"] == "INT64":
            inputs.append(ints(tensor["name"], np.ones(shape, np.int64)))
        else:
            t = grpcclient.InferInput(tensor["name"], shape, "FP32")
            t.set_data_from_numpy(np.zeros(shape, np.float32))
            inputs.append(t)
    refused("spell_decoder", inputs, "decoder_input_ids")
    after = client.infer("spell_correct", [string_input(grpcclient, "TEXT", ["tayler swift"])]).as_numpy("CORRECTED")
    assert after.tolist() == before.tolist()


def _short_request_during_a_long_batch(client, hf):
    """Send a 32-query beam-8 batch, then a one-query greedy request while it decodes: the short one must come back
    first, and both equal HF."""
    import threading
    import time

    long_texts = [f"{t} {u}" for t, u in zip(INPUTS, reversed(INPUTS))][:32]
    done = {}

    def long_batch():
        done["long"] = (_correct(client, long_texts, {"num_beams": 8}), time.perf_counter())

    thread = threading.Thread(target=long_batch)
    started = time.perf_counter()
    thread.start()
    time.sleep(0.05)  # the long batch is decoding by now
    short = _correct(client, ["tayler swift"], {"num_beams": 1})
    short_done = time.perf_counter()
    thread.join(120)
    long_out, long_done = done["long"]
    assert short_done < long_done, f"short {short_done - started:.3f}s, long {long_done - started:.3f}s"
    assert short == hf(["tayler swift"], num_beams=1)
    assert long_out == [hf([t], num_beams=8)[0] for t in long_texts]
    return short_done - started, long_done - started


def test_short_request_is_not_held_behind_a_long_batch(grpc_client, hf):
    """spell_generate runs CTranslate2 in two instances: CTranslate2 cannot add rows to a running search, so a
    request arriving mid-batch starts on the free instance instead of waiting for the batch to end."""
    _short_request_during_a_long_batch(grpc_client, hf)


@pytest.fixture(scope="module")
def inprocess_server(tmp_path_factory):
    """spell_correct with the loop over in-process ONNX Runtime (one fused stub, in-flight batching)."""
    from support.reliability import running_server, write_repo
    from search_build.pipelines.spell_correct import spell_correct_pipeline

    base = tmp_path_factory.mktemp("spell_inprocess")
    pipeline = spell_correct_pipeline(engine_mode="inprocess")
    with running_server(write_repo([pipeline], base / "repo"), base / "log") as server:
        yield server


@pytest.mark.parametrize("server_name", ["bls_server", "inprocess_server"])
def test_in_flight_batching_lets_a_short_request_join_and_leave_first(request, server_name, hf):
    """The loop engines batch in flight: with ONE spell_generate instance (nothing else to run on), a request sent
    while a long batch decodes joins it at the next step and returns before it, equal to HF. The three-stage bls
    wiring (BLS calls from the scheduler's thread) and the fused inprocess stub both do."""
    server = request.getfixturevalue(server_name)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    config = client.get_model_config("spell_generate", as_json=True)["config"]
    assert sum(int(g.get("count", 1)) for g in config["instance_group"]) == 1
    assert config["parameters"]["inflight_batching"]["string_value"] == "true"
    short_s, long_s = _short_request_during_a_long_batch(client, hf)
    # The short request needs ~7 of the long batch's ~20 steps, each shared with it: it must leave well before.
    assert short_s < 0.75 * long_s, (short_s, long_s)
    # Mixed concurrent requests with controls still equal HF, and a bad request fails alone.
    texts = INPUTS[:10]
    import concurrent.futures as cf

    with cf.ThreadPoolExecutor(10) as pool:
        futures = [
            pool.submit(_correct, client, [t], {"num_beams": 1 + i % 4, "no_repeat_ngram_size": 2 * (i % 2)})
            for i, t in enumerate(texts)
        ]
        bad = pool.submit(_correct, client, ["tayler swift"], {"num_beams": 99})
        for i, (t, f) in enumerate(zip(texts, futures)):
            options = {"num_beams": 1 + i % 4, "no_repeat_ngram_size": 2 * (i % 2)}
            assert f.result() == hf([t], **options), (t, options)
        with pytest.raises(Exception, match="num_beams"):
            bad.result()
