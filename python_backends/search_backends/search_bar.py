"""The search bar in one call: spell correction -> (intent, query embedding) -> catalog search.

Triton-free. The adapter supplies the four stages as async callables: BLS calls to the stage models, or
(:func:`in_process_stages`) the stages' own engines run in the adapter's process, which saves four Python-backend
hops per batch. This module validates each request, runs every request of a Triton batch through each stage in
one call (intent and embedding on the corrected text), and splits the results back. When a batched stage call
fails, the requests are retried one by one so only the request that caused the failure gets an error.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Awaitable, Callable, Sequence

import numpy as np

from .contracts import search_bar as C
from .catalog_index import padded, top_k_of_request
from .text_input import InputError, decode_text

if TYPE_CHECKING:
    from .catalog_index import Catalog
    from .spell_corrector import SpellStage
    from .spell_generation import GenerationParams
    from .text_encoding import TextEncoder


@dataclass(frozen=True)
class SearchBarRequest:
    texts: list[str]
    top_k: int = C.DEFAULT_TOP_K
    correct_spelling: bool = True
    detect_intent: bool = True


@dataclass(frozen=True)
class Stages:
    spell: Callable[[list[str]], Awaitable[list[str]]]
    intent: Callable[[list[str]], Awaitable[tuple[list[str], np.ndarray]]]  # labels, probabilities [n, classes]
    embed: Callable[[list[str]], Awaitable[np.ndarray]]  # [n, dim]
    search: Callable[[np.ndarray, int], Awaitable[dict[str, np.ndarray]]]  # catalog_search outputs, [n, <=k]
    intent_classes: int


def in_process_stages(
    spell: "SpellStage",
    spell_params: "GenerationParams",
    intent: "TextEncoder",
    embedding: "TextEncoder",
    catalog: "Catalog",
) -> Stages:
    """The four stages over engines in this process: the spell stage at ``spell_params`` with its guard, the intent
    encoder and head, the embedding encoder, and the catalog index. Each runs the whole batch in one call."""
    head = intent.head
    if head is None:
        raise ValueError("in-process search bar: the intent encoder has no head")

    async def correct(texts: list[str]) -> list[str]:
        return spell.correct([(texts, [spell_params] * len(texts), [True] * len(texts))])[0]

    async def detect(texts: list[str]):
        prediction = head.predict(intent.pooled(texts), [(0, len(texts), 1)])[0]
        return list(prediction.labels), prediction.probabilities

    async def embed(texts: list[str]) -> np.ndarray:
        return embedding.pooled(texts)

    async def search(vectors: np.ndarray, k: int) -> dict[str, np.ndarray]:
        return padded(catalog.search(np.ascontiguousarray(vectors, np.float32), k))

    return Stages(correct, detect, embed, search, head.num_labels)


def bool_option(values: np.ndarray | None, field: str, default: bool) -> bool:
    if values is None or values.size == 0:
        return default
    flat = np.asarray(values).reshape(-1)
    if flat.dtype != np.bool_:
        raise InputError(f"{field}: expected BOOL, got {flat.dtype}")
    if (flat != flat[0]).any():
        raise InputError(f"{field}: every row of one request must have the same value")
    return bool(flat[0])


def parse_request(
    text: np.ndarray | None,
    top_k: np.ndarray | None = None,
    correct_spelling: np.ndarray | None = None,
    detect_intent: np.ndarray | None = None,
) -> SearchBarRequest:
    """One request's inputs -> a validated request; InputError names the field."""
    if text is None or text.size == 0:
        raise InputError(f"{C.TEXT}: missing input")
    texts = [decode_text(v, field=C.TEXT) for v in np.asarray(text).reshape(-1)]
    try:
        k = top_k_of_request(top_k)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return SearchBarRequest(
        texts,
        k,
        bool_option(correct_spelling, C.CORRECT_SPELLING, True),
        bool_option(detect_intent, C.DETECT_INTENT, True),
    )


async def _run_batch(requests: Sequence[SearchBarRequest], stages: Stages) -> list[dict[str, np.ndarray]]:
    texts = [t for r in requests for t in r.texts]
    owner = [i for i, r in enumerate(requests) for _ in r.texts]
    spell_rows = [row for row, i in enumerate(owner) if requests[i].correct_spelling]
    corrected = list(texts)
    if spell_rows:
        for row, fixed in zip(spell_rows, await stages.spell([texts[row] for row in spell_rows])):
            corrected[row] = fixed
    intent_rows = [row for row, i in enumerate(owner) if requests[i].detect_intent]

    async def no_intent():
        return [], np.zeros((0, stages.intent_classes), np.float32)

    intent_call = stages.intent([corrected[row] for row in intent_rows]) if intent_rows else no_intent()
    (labels, probabilities), vectors = await asyncio.gather(intent_call, stages.embed(corrected))
    found = await stages.search(vectors, max(r.top_k for r in requests))

    intent = np.full(len(texts), "", dtype=object)
    probs = np.zeros((len(texts), stages.intent_classes), dtype=np.float32)
    intent[intent_rows] = list(labels)
    if intent_rows:
        probs[intent_rows] = probabilities
    results, start = [], 0
    for r in requests:
        rows = slice(start, start + len(r.texts))
        start += len(r.texts)
        out = {
            C.CORRECTED: np.array(corrected[rows], dtype=object).reshape(-1, 1),
            C.INTENT: intent[rows].reshape(-1, 1),
            C.INTENT_PROBABILITIES: probs[rows],
        }
        out.update({name: value[rows, : r.top_k] for name, value in found.items()})
        results.append(out)
    return results


async def run_search_bar(
    requests: Sequence[SearchBarRequest], stages: Stages
) -> list[dict[str, np.ndarray] | Exception]:
    """Results per request, or the exception that request alone raised."""
    if not requests:
        return []
    try:
        return list(await _run_batch(requests, stages))
    except Exception as exc:  # noqa: BLE001 - find out which request it was
        if len(requests) == 1:
            return [exc]
    outcomes: list[dict[str, np.ndarray] | Exception] = []
    for r in requests:
        try:
            outcomes.append((await _run_batch([r], stages))[0])
        except Exception as exc:  # noqa: BLE001 - reported to this request only
            outcomes.append(exc)
    return outcomes
