"""Direct calls to the encoder engines (composing models) with out-of-range ids, over-long rows or bad masks:
a per-request INVALID_ARGUMENT naming the tensor, and the requests batched with them answered as when alone."""

from __future__ import annotations


import numpy as np
import pytest

from search_backends.engine_inputs import EngineInputRules
from search_backends.text_input import InputError


def test_rules_round_trip_and_check():
    rules = EngineInputRules(16, {"input_ids": (0, 100), "attention_mask": (0, 2)})
    assert EngineInputRules.from_parameters(rules.to_parameters()) == rules
    ok = {"input_ids": np.array([[1, 99]]), "attention_mask": np.array([[1, 0]])}
    rules.check(ok)
    for feed, field in (
        ({**ok, "input_ids": np.array([[1, 100]])}, "input_ids"),
        ({**ok, "input_ids": np.array([[-1, 2]])}, "input_ids"),
        ({**ok, "attention_mask": np.array([[1, 2]])}, "attention_mask"),
        ({"input_ids": np.ones((1, 17), int), "attention_mask": np.ones((1, 17), int)}, "input_ids"),
        ({**ok, "attention_mask": np.array([[1, 1, 1]])}, "shapes differ"),
    ):
        with pytest.raises(InputError, match=field):
            rules.check(feed)
