"""Decoding parameters resolved exactly the way `transformers` `generate()` resolves them.

Priority: per-request overrides > the checkpoint's generation_config.json > HF's global defaults.
Lengths count decoder tokens *including* the decoder start token, as in HF for encoder-decoder models:
max_new_tokens=N means max_length=N+1, and when neither max_length nor max_new_tokens is set anywhere,
max_length = min(20 + 1, max_position_embeddings). min_new_tokens=N means min_length=N+1.
An override of None means "not given" (use the default).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

# transformers.GenerationConfig._get_default_generation_params(), for the keys implemented here
HF_DEFAULTS: dict[str, Any] = {
    "max_length": 20,
    "min_length": 0,
    "num_beams": 1,
    "length_penalty": 1.0,
    "early_stopping": False,
    "no_repeat_ngram_size": 0,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
}
IMPLEMENTED = {
    *HF_DEFAULTS,
    "max_new_tokens",
    "min_new_tokens",
    "decoder_start_token_id",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
}
# Options that change the output but are not implemented: accepted only at their neutral value.
NEUTRAL = {
    "do_sample": False,
    "num_return_sequences": 1,
    "num_beam_groups": 1,
    "diversity_penalty": 0.0,
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "encoder_no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "force_words_ids": None,
    "constraints": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "sequence_bias": None,
    "exponential_decay_length_penalty": None,
    "remove_invalid_values": False,
    "guidance_scale": None,
    "max_time": None,
    "stop_strings": None,
    "penalty_alpha": None,
}
# generation keys HF copies from config.json when a checkpoint has no generation_config.json
_MODEL_CONFIG_KEYS = IMPLEMENTED | set(NEUTRAL)


def _token_tuple(value) -> tuple[int, ...]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value)
    return (int(value),)


@dataclass(frozen=True)
class GenerationParams:
    """Fully resolved settings of one request."""

    decoder_start_token_id: int
    eos_token_ids: tuple[int, ...]
    pad_token_id: int | None
    max_length: int  # total decoder length, decoder start token included
    min_length: int
    num_beams: int
    length_penalty: float
    early_stopping: bool | str  # True, False or "never"
    no_repeat_ngram_size: int
    forced_bos_token_id: int | None
    forced_eos_token_ids: tuple[int, ...]


@dataclass(frozen=True)
class GenerationDefaults:
    """A checkpoint's generation_config.json (or config.json fallback) plus its max_position_embeddings."""

    values: Mapping[str, Any]
    max_position_embeddings: int | None = None

    @classmethod
    def from_model_dir(cls, model_dir: str | Path) -> "GenerationDefaults":
        model_dir = Path(model_dir)
        config = json.loads((model_dir / "config.json").read_text()) if (model_dir / "config.json").exists() else {}
        gen_file = model_dir / "generation_config.json"
        if gen_file.exists():
            values = json.loads(gen_file.read_text())
        else:
            values = {k: v for k, v in config.items() if k in _MODEL_CONFIG_KEYS}
        return cls({k: v for k, v in values.items() if v is not None}, config.get("max_position_embeddings"))

    def resolve(self, **overrides) -> GenerationParams:
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(given) - IMPLEMENTED - set(NEUTRAL)
        if unknown:
            raise ValueError(f"unsupported generation options: {sorted(unknown)}")
        merged = {**HF_DEFAULTS, **self.values, **given}
        for key, neutral in NEUTRAL.items():
            if merged.get(key, neutral) not in (neutral, None) and not (key == "guidance_scale" and merged[key] == 1):
                raise ValueError(f"generation option {key}={merged[key]!r} is not implemented")

        if merged.get("max_new_tokens") is not None:
            max_length = int(merged["max_new_tokens"]) + 1
        elif "max_length" not in given and "max_length" not in self.values:
            max_length = HF_DEFAULTS["max_length"] + 1
            if self.max_position_embeddings is not None:
                max_length = min(max_length, self.max_position_embeddings)
        else:
            max_length = int(merged["max_length"])
        if max_length <= 1:
            raise ValueError(f"max_length={max_length} leaves no room to generate (the decoder start token counts)")
        min_length = int(merged["min_length"])
        if merged.get("min_new_tokens") is not None:
            min_length = int(merged["min_new_tokens"]) + 1

        eos = _token_tuple(merged.get("eos_token_id"))
        start = merged.get("decoder_start_token_id", merged.get("bos_token_id"))
        if start is None:
            raise ValueError("decoder_start_token_id or bos_token_id has to be defined")
        pad = merged.get("pad_token_id", eos[0] if eos else None)
        early = merged["early_stopping"]
        if early not in (True, False, "never"):
            raise ValueError(f"early_stopping must be True, False or 'never', got {early!r}")
        num_beams = int(merged["num_beams"])
        if num_beams < 1:
            raise ValueError("num_beams must be >= 1")
        return GenerationParams(
            decoder_start_token_id=int(start),
            eos_token_ids=eos,
            pad_token_id=None if pad is None else int(pad),
            max_length=max_length,
            min_length=min_length,
            num_beams=num_beams,
            length_penalty=float(merged["length_penalty"]),
            early_stopping=early,
            no_repeat_ngram_size=int(merged["no_repeat_ngram_size"] or 0),
            forced_bos_token_id=None if merged["forced_bos_token_id"] is None else int(merged["forced_bos_token_id"]),
            forced_eos_token_ids=_token_tuple(merged["forced_eos_token_id"]),
        )
