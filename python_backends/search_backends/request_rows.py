"""The bookkeeping around an adapter's one batched call: requests' rows into one flat batch, and back.

A Triton batch holds several requests of one or more rows each. Adapters run one vectorised call for all their
rows; these helpers pack the rows and remember which rows belong to which request (``(start, stop)`` ranges).
"""

from __future__ import annotations

from typing import Sequence, TypeVar

import numpy as np

T = TypeVar("T")


def concat_rows(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Arrays of N_i rows each -> one array of sum(N_i) rows, and each array's (start, stop) in it."""
    ranges, start = [], 0
    for array in arrays:
        ranges.append((start, start + len(array)))
        start += len(array)
    return np.concatenate(arrays), ranges


def flatten_rows(lists: Sequence[Sequence[T]]) -> tuple[list[T], list[tuple[int, int]]]:
    """Lists of N_i items each -> one list of sum(N_i) items, and each list's (start, stop) in it."""
    flat: list[T] = []
    ranges = []
    for items in lists:
        ranges.append((len(flat), len(flat) + len(items)))
        flat.extend(items)
    return flat, ranges


def pack_spans(items: Sequence[T], spans: Sequence[tuple[int, int]]) -> tuple[list[T], list[tuple[int, int]]]:
    """The items of each (start, stop) span of ``items``, packed in order, and each span's (start, stop) in the
    packed list (spans of requests dropped in between leave no gap)."""
    packed: list[T] = []
    ranges = []
    for start, stop in spans:
        ranges.append((len(packed), len(packed) + stop - start))
        packed.extend(items[start:stop])
    return packed, ranges
