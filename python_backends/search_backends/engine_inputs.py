"""Checks on what a client sends an encoder engine directly (the composing models are reachable too).

Without them one direct request with a 512-token row makes every co-batched request pay for padding to 512, and
an out-of-range token id raises inside the graph and fails every request of the batch. The rules come from the
build: the longest sequence the engine was exported and profiled for, and each input's value range (vocabulary
size, token type count, 0/1 masks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from .contracts.product_search import ATTENTION_MASK, INPUT_IDS, TOKEN_TYPE_IDS
from .model_parameters import int_parameter
from .text_input import InputError

RANGES_PARAMETER, MAX_LENGTH_PARAMETER = "value_ranges", "max_sequence_length"


@dataclass(frozen=True)
class EngineInputRules:
    max_sequence_length: int = 0  # 0 = no limit
    ranges: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> [low, high)

    @classmethod
    def from_parameters(cls, params: Mapping[str, str]) -> "EngineInputRules":
        ranges = {}
        for item in filter(None, params.get(RANGES_PARAMETER, "").split(",")):
            name, _, bounds = item.partition("=")
            low, _, high = bounds.partition(":")
            ranges[name.strip()] = (int(low), int(high))
        return cls(int_parameter(params, MAX_LENGTH_PARAMETER, 0, minimum=0), ranges)

    def to_parameters(self) -> dict[str, str]:
        return {
            MAX_LENGTH_PARAMETER: str(self.max_sequence_length),
            RANGES_PARAMETER: ",".join(f"{k}={lo}:{hi}" for k, (lo, hi) in self.ranges.items()),
        }

    def request_feed(self, values: Mapping[str, np.ndarray | None]) -> dict[str, np.ndarray]:
        """One request's engine inputs by name, checked: InputError for a missing input or a broken rule."""
        feed: dict[str, np.ndarray] = {}
        for name, value in values.items():
            if value is None:
                raise InputError(f"{name}: missing input")
            feed[name] = value
        self.check(feed)
        return feed

    def check(self, feed: Mapping[str, np.ndarray]) -> None:
        """Raise InputError naming the tensor when one request's inputs break a rule."""
        shapes = {name: np.shape(value) for name, value in feed.items() if name in self.ranges}
        if len(set(shapes.values())) > 1:
            raise InputError(f"{', '.join(shapes)}: shapes differ ({', '.join(map(str, shapes.values()))})")
        for name, value in feed.items():
            if name not in self.ranges:
                continue
            if value.ndim != 2 or value.shape[1] < 1:
                raise InputError(f"{name}: expected [rows, tokens] with at least one token, got {list(value.shape)}")
            if self.max_sequence_length and value.shape[1] > self.max_sequence_length:
                raise InputError(
                    f"{name}: {value.shape[1]} tokens; this engine takes at most {self.max_sequence_length}"
                )
            low, high = self.ranges[name]
            if value.size and (value.min() < low or value.max() >= high):
                raise InputError(f"{name}: values must be in [{low}, {high}), got {value.min()}..{value.max()}")


def bert_input_ranges(config: Mapping) -> dict[str, tuple[int, int]]:
    """The value ranges of a BERT-style encoder's inputs from its Hugging Face ``config.json``."""
    return {
        INPUT_IDS: (0, int(config["vocab_size"])),
        ATTENTION_MASK: (0, 2),
        TOKEN_TYPE_IDS: (0, int(config.get("type_vocab_size", 2))),
    }
