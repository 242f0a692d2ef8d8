"""What the spell-model tests share: the query set, the decoding options HF is compared under, and the helpers
that run both sides (the exported graphs in-process, HF ``generate()``)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import transformers

from search_backends.spell_corrector import OnnxSpellModel
from support.project import PROJECT_ROOT

SPELL_DIR = PROJECT_ROOT / "models" / "spell_bart"

QUERIES = [
    "beatels",
    "metalica",
    "led zepelin",
    "pink floyd dark sid",
    "the rolling stonse",
    "a",
    "hello",
    "jazz",
    "clasical music",
    "tayler swift love stroy",
    "queeen bohemian rhapsody",
    "nirvanna smells like",
    "acoustic gutiar",
    "chill lofi beats",
    "hip hop",
    "teh",
    "rainbow",
    "summer vibes playlsit",
    "moonlight sonata",
    "eletcronic dance musci",
    "x",
    "country roads take me hoem",
    "bluess",
    "frank sinatra",
    "symphony no 9",
    "drake",
    "workout",
    "pianoo",
    "kpop",
    "the beatles abbey road come together",
    "sad songs",
    "abcdefghijklmnopqrstuvwxyz",
]

GENERATION_OPTIONS = [
    {},  # the checkpoint's generation_config.json
    {"num_beams": 1},
    {"num_beams": 4},
    {"num_beams": 4, "length_penalty": 0.5, "early_stopping": False},
    {"num_beams": 4, "length_penalty": 2.0, "early_stopping": "never"},
    {"num_beams": 4, "length_penalty": -1.0, "early_stopping": True},
    {"num_beams": 3, "no_repeat_ngram_size": 2},
    {"num_beams": 1, "no_repeat_ngram_size": 3, "min_length": 12},
    {"num_beams": 4, "min_new_tokens": 12, "max_new_tokens": 18},
    {"num_beams": 2, "max_length": 6},
    {"num_beams": 1, "max_new_tokens": 4},
]


@functools.lru_cache(maxsize=None)
def spell_tokenizer():
    return transformers.AutoTokenizer.from_pretrained(SPELL_DIR)


@functools.lru_cache(maxsize=None)
def onnx_runner(onnx_dir: Path) -> OnnxSpellModel:
    return OnnxSpellModel(onnx_dir, intra_op_threads=1)


def spell_inputs(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    enc = spell_tokenizer()(texts, padding=True, return_tensors="np")
    return enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)


def hf_generate(model, ids: np.ndarray, mask: np.ndarray, **options) -> np.ndarray:
    with torch.no_grad():
        return model.generate(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), **options).numpy()


def padded_like(rows: list[list[int]], reference: np.ndarray, params) -> np.ndarray:
    """Our per-request rows padded the way HF pads a batch (pad, or eos when pad is unset)."""
    fill = params.pad_token_id if params.pad_token_id is not None else params.eos_token_ids[0]
    width = reference.shape[1]
    assert all(len(r) <= width for r in rows), [len(r) for r in rows]
    return np.array([r + [fill] * (width - len(r)) for r in rows], dtype=np.int64)


# ---------------------------------------------------------------------------------------------- tokenizer


def random_bart(path: Path, *, vocab_size: int, seed: int, **config) -> Path:
    """A randomly initialised BART of another shape than the checkpoint (8 heads, 2 encoder / 4 decoder layers, relu,
    unscaled embeddings) with a visible final_logits_bias, so an export must carry it; ``config`` adds BartConfig
    fields."""
    torch.manual_seed(seed)
    bart = transformers.BartConfig(
        vocab_size=vocab_size,
        d_model=64,
        encoder_layers=2,
        decoder_layers=4,
        encoder_attention_heads=8,
        decoder_attention_heads=8,
        encoder_ffn_dim=96,
        decoder_ffn_dim=160,
        max_position_embeddings=40,
        activation_function="relu",
        scale_embedding=False,
        bos_token_id=0,
        pad_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=2,
        **config,
    )
    model = transformers.BartForConditionalGeneration(bart).eval()
    with torch.no_grad():
        model.final_logits_bias.copy_(torch.randn_like(model.final_logits_bias) * 0.5)
    model.save_pretrained(path, safe_serialization=True)
    return path
