"""Per-request decoding controls (optional inputs or request parameters), validated with clear messages."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from .contracts.spell_correct import CONTROL_INPUTS
from .text_input import InputError


@dataclass(frozen=True)
class ControlLimits:
    max_num_beams: int = 8
    max_new_tokens: int = 64
    max_no_repeat_ngram_size: int = 16


def _scalar(value: Any) -> Any:
    """One request's control (an array with one value per row, all equal, or a plain value) -> Python scalar;
    bytes -> str. A request of N texts sends its controls as [N, 1] (Triton gives every input of a request the same
    batch size), so one decoding setting for the request is N equal values."""
    if hasattr(value, "reshape"):
        flat = value.reshape(-1)
        if flat.size == 0:
            raise InputError("expected a value, got none")
        if flat.size > 1 and any(v != flat[0] for v in flat[1:]):
            raise InputError(f"every row of one request must have the same value, got {flat.tolist()!r}")
        value = flat[0]
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8", "replace")
    return value.item() if hasattr(value, "item") else value


def _int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not (
        isinstance(value, int)
        or (isinstance(value, float) and value.is_integer())
        or (isinstance(value, str) and value.strip().lstrip("-").isdigit())
    ):
        raise InputError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if not lo <= value <= hi:
        raise InputError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def parse_controls(inputs: Mapping[str, Any], parameters: Mapping[str, Any], limits: ControlLimits) -> dict[str, Any]:
    """generate() overrides from optional inputs (taking precedence) and request parameters."""
    raw: dict[str, Any] = {}
    for key, value in parameters.items():
        if key in CONTROL_INPUTS.values():
            raw[key] = value
    for name, option in CONTROL_INPUTS.items():
        if inputs.get(name) is not None:
            try:
                raw[option] = _scalar(inputs[name])
            except InputError as exc:
                raise InputError(f"{name}: {exc}") from None
    out: dict[str, Any] = {}
    if "num_beams" in raw:
        out["num_beams"] = _int("num_beams", raw["num_beams"], 1, limits.max_num_beams)
    if "max_new_tokens" in raw:
        out["max_new_tokens"] = _int("max_new_tokens", raw["max_new_tokens"], 1, limits.max_new_tokens)
    if "min_length" in raw:
        out["min_length"] = _int("min_length", raw["min_length"], 0, limits.max_new_tokens + 1)
    if "no_repeat_ngram_size" in raw:
        out["no_repeat_ngram_size"] = _int(
            "no_repeat_ngram_size", raw["no_repeat_ngram_size"], 0, limits.max_no_repeat_ngram_size
        )
    if "length_penalty" in raw:
        try:
            value = float(raw["length_penalty"])
        except (TypeError, ValueError):
            raise InputError(f"length_penalty must be a number, got {raw['length_penalty']!r}") from None
        if not math.isfinite(value) or abs(value) > 100:
            raise InputError(f"length_penalty must be a finite number in [-100, 100], got {value}")
        out["length_penalty"] = value
    if "early_stopping" in raw:
        value = raw["early_stopping"]
        table = {"true": True, "false": False, "never": "never", "1": True, "0": False}
        key = str(value).strip().lower()
        if isinstance(value, bool):
            out["early_stopping"] = value
        elif key in table:
            out["early_stopping"] = table[key]
        else:
            raise InputError(f"early_stopping must be true, false or never, got {value!r}")
    return out
