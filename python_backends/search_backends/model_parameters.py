"""Typed reading of the string ``parameters`` of a Triton model config, with errors that name the key.

A typo in a config.pbtxt (``max_length: "12B"``) must stop the model from loading with a message that
says which parameter is wrong and why, not a bare ``invalid literal for int()`` from deep inside.
"""

from __future__ import annotations

import codecs
import re
from typing import Mapping

# One ``parameters { key: "k" value { string_value: "v" } }`` entry of a config.pbtxt as protobuf's text format writes
# it (strings C-escaped; an empty value has no string_value line). The Python-backend environment has no Triton
# config proto to parse a whole file with.
_STRING_PARAMETER = re.compile(
    r'parameters\s*\{\s*key:\s*"((?:[^"\\]|\\.)*)"\s*value\s*\{\s*(?:string_value:\s*"((?:[^"\\]|\\.)*)"\s*)?\}\s*\}'
)


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


def _unescape(text: str) -> str:
    return codecs.escape_decode(text.encode("utf-8"))[0].decode("utf-8")


def config_string_parameters(config_text: str) -> dict[str, str]:
    """The string ``parameters`` of a model's config.pbtxt, from its text: for a model that runs another model's
    files (its folder and settings) in its own process."""
    return {_unescape(key): _unescape(value) for key, value in _STRING_PARAMETER.findall(config_text)}
