"""Readable text for search_bar results (used by `searchbar query search_bar` and the demo)."""

from __future__ import annotations

import json

import numpy as np

from search_backends.contracts import search_bar as C


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def format_results(texts: list[str], result, labels: list[str] | None = None, max_fields: int = 3) -> str:
    """One block per query: corrected text, intent and its probability, then the ranked items."""
    corrected = result.as_numpy(C.CORRECTED)
    intents = result.as_numpy(C.INTENT)
    probs = result.as_numpy(C.INTENT_PROBABILITIES)
    ids, titles, fields, scores = (result.as_numpy(n) for n in (C.ITEM_IDS, C.ITEM_TITLES, C.ITEM_FIELDS, C.SCORES))
    lines = []
    for row, text in enumerate(texts):
        fixed, intent = _text(corrected[row][0]), _text(intents[row][0])
        head = f"{text!r}"
        head += f" -> {fixed!r}" if fixed != text else " (spelling kept)"
        if intent:
            head += f"  intent {intent} ({float(np.max(probs[row])):.3f})"
        lines.append(head)
        for rank, (item_id, title, extra, score) in enumerate(zip(ids[row], titles[row], fields[row], scores[row]), 1):
            item_id = _text(item_id)
            if item_id == C.MISSING_ID:
                continue
            shown = json.loads(_text(extra))
            detail = ", ".join(f"{k}={v}" for k, v in list(shown.items())[:max_fields])
            lines.append(
                f"  {rank:2}. {float(score):.3f}  {_text(title)}  [{item_id}]" + (f"  {detail}" if detail else "")
            )
    return "\n".join(lines)
