"""Typed reading of the string ``parameters`` of a Triton model config, with errors that name the key.

A typo in a config.pbtxt (``max_length: "12B"``) must stop the model from loading with a message that
says which parameter is wrong and why, not a bare ``invalid literal for int()`` from deep inside.
"""

from __future__ import annotations

from typing import Mapping


class ConfigError(ValueError):
    """An invalid value in a model's configuration."""


def int_parameter(
    params: Mapping[str, str], key: str, default: int, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    raw = params.get(key)
    if raw is None or str(raw).strip() == "":
        value = default
    else:
        try:
            value = int(str(raw).strip())
        except ValueError:
            raise ConfigError(f"model parameter {key}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"model parameter {key}={value} must be >= {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"model parameter {key}={value} must be <= {maximum}")
    return value
