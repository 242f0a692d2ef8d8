"""How many ONNX Runtime threads each engine instance starts (no server: fast)."""

from __future__ import annotations

import pytest

from search_backends.onnx_runner import threads_per_instance


@pytest.mark.parametrize(
    "requested, instances, cpus, expected",
    [
        (0, 1, 2, 2),  # auto, one instance: every core
        (0, 2, 2, 1),  # auto, two instances on 2 cores: one thread each, not 2 x 2
        (0, 3, 2, 1),  # never below one thread
        (0, 2, 16, 8),
        (3, 2, 2, 3),  # an explicit setting is kept
    ],
)
def test_auto_threads_share_the_cores_between_instances(requested, instances, cpus, expected):
    assert threads_per_instance(requested, instances, cpus) == expected


def test_auto_threads_use_this_process_cores():
    assert 1 <= threads_per_instance(0, 1) <= (__import__("os").cpu_count() or 1)
