"""The learnt word reranker of the lexicon repair: which lexicon word the user meant, or the word as typed.

For a word the repair considers (see `spell_guard.LexiconRepair.wants`), the candidates are the word as typed
("keep"), the model's word at that place, and the lexicon words within edit distance 2 of either. Each
candidate gets a few features: its Zipf frequency, whether it is the typed word and how frequent that is, the
edits that turn it into what was typed (counted by kind from an optimal-string-alignment path: a vowel for a
vowel, a keyboard neighbour, a doubled or dropped letter, a swap, a changed first letter, ...), and whether it
forms a known two-word phrase with a neighbour. A linear score over them (a conditional logit: softmax over
one word's candidates) picks the winner.

The weights are fitted by `search_build.training.spell_rerank_train` on the training distribution of the spell data
(training-split real misspellings and synthetic noise, fresh seeds), never on an evaluation file, and shipped
with the checkpoint as `word_reranker.json`. Without that file the repair uses its hand-set formula.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

VOWELS = frozenset("aeiouy")
QWERTY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
EDIT_KINDS = (
    "sub_vowel",
    "sub_keyboard",
    "sub_other",
    "ins_double",
    "ins_vowel",
    "ins_other",
    "del_double",
    "del_vowel",
    "del_other",
    "transpose",
)
FEATURES = (
    "keep",
    "keep_unknown",
    "keep_zipf",
    "zipf",
    "distance_1",
    "distance_2",
    "distance_far",
    *EDIT_KINDS,
    "first_letter",
    "context",
    "short_change",
    "length_change",
    "rare_candidate",
    "far_short",
    "channel",
    "from_model",
)


def keyboard_neighbours() -> dict[str, str]:
    """Letters physically adjacent on a QWERTY keyboard (same row and the rows above/below)."""
    pos = {ch: (r, c) for r, row in enumerate(QWERTY_ROWS) for c, ch in enumerate(row)}
    out = {}
    for ch, (r, c) in pos.items():
        near = [
            o for o, (r2, c2) in pos.items() if o != ch and abs(r - r2) <= 1 and -1 <= (c2 - c) + 0.5 * (r2 - r) <= 1
        ]
        out[ch] = "".join(sorted(near))
    return out


NEIGHBOURS = keyboard_neighbours()


def edit_ops(typed: str, intended: str) -> list[tuple[str, str, str, bool]]:
    """The edits that turn `intended` into `typed` along one optimal string alignment, first to last.

    ("sub", intended char, typed char), ("ins", char before, extra typed char), ("del", char before, dropped
    intended char), ("trans", first, second) of the intended pair; "^" stands before the first letter. The
    last field says whether the edit is at the end of the word (people garble endings their own way).
    """
    n, m = len(typed), len(intended)
    d = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        d[i][0] = i
    for j in range(m + 1):
        d[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost = typed[i - 1] != intended[j - 1]
            best = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and typed[i - 1] == intended[j - 2] and typed[i - 2] == intended[j - 1]:
                best = min(best, d[i - 2][j - 2] + 1)
            d[i][j] = best
    ops = []
    i, j = n, m
    while i or j:
        if i and j and typed[i - 1] == intended[j - 1] and d[i][j] == d[i - 1][j - 1]:
            i, j = i - 1, j - 1
        elif i and j and d[i][j] == d[i - 1][j - 1] + 1:
            ops.append(("sub", intended[j - 1], typed[i - 1], j == m))
            i, j = i - 1, j - 1
        elif (
            i > 1
            and j > 1
            and typed[i - 1] == intended[j - 2]
            and typed[i - 2] == intended[j - 1]
            and d[i][j] == d[i - 2][j - 2] + 1
        ):
            ops.append(("trans", intended[j - 2], intended[j - 1], j == m))
            i, j = i - 2, j - 2
        elif i and d[i][j] == d[i - 1][j] + 1:  # the user typed an extra letter
            ops.append(("ins", intended[j - 1] if j else "^", typed[i - 1], j == m))
            i -= 1
        else:  # the user dropped a letter of the intended word
            ops.append(("del", intended[j - 2] if j > 1 else "^", intended[j - 1], j == m))
            j -= 1
    return ops[::-1]


def edit_kinds(typed: str, intended: str, ops: list | None = None) -> Counter:
    """`edit_ops` by coarse kind: a vowel for a vowel, a keyboard neighbour, a doubled or dropped letter, ..."""
    kinds: Counter = Counter()
    for op, a, b, _ in edit_ops(typed, intended) if ops is None else ops:
        if op == "sub":
            kinds[
                "sub_vowel"
                if a in VOWELS and b in VOWELS
                else "sub_keyboard"
                if b in NEIGHBOURS.get(a, "")
                else "sub_other"
            ] += 1
        elif op == "trans":
            kinds["transpose"] += 1
        elif op == "ins":  # `b` typed extra after intended `a`; "double" when the typed word doubles it
            kinds["ins_double" if b == a or b + b in typed else "ins_vowel" if b in VOWELS else "ins_other"] += 1
        else:  # intended `b` dropped after `a`; "double" when the intended word doubles it
            kinds["del_double" if b == a or b + b in intended else "del_vowel" if b in VOWELS else "del_other"] += 1
    return kinds


@dataclass
class ErrorModel:
    """How people misspell, per edit (Kernighan, Church and Gale's confusion counts), from real misspellings.

    `log_prob(ops)` sums, over the edits, log((count(edit) + 0.5) / (count(its context) + 0.5 * 27)), the
    context being the intended letter (substitution), the letter before (insertion), the intended pair
    (deletion, transposition). Fitted by `search_build.training.spell_rerank_train` on the training split only.
    """

    edits: dict[str, int]
    contexts: dict[str, int]

    @staticmethod
    def key(op: str, a: str, b: str, at_end: bool) -> str:
        return f"{op}{'$' * at_end} {a}{b}"

    @staticmethod
    def context_key(op: str, a: str, b: str, at_end: bool) -> str:
        return f"{1 if op in ('sub', 'ins') else 2}{'$' * at_end} " + (a if op in ("sub", "ins") else a + b)

    @classmethod
    def fit(cls, pairs) -> "ErrorModel":
        """From (misspelling, intended word) pairs."""
        edits: Counter = Counter()
        contexts: Counter = Counter()
        for typed, intended in pairs:
            for op in edit_ops(typed, intended):
                edits[cls.key(*op)] += 1
            padded = "^" + intended
            contexts.update(f"1 {ch}" for ch in padded[:-1])
            contexts.update(f"2 {padded[k : k + 2]}" for k in range(len(padded) - 2))
            contexts.update((f"1$ {padded[-1]}", f"2$ {padded[-2:]}"))
        return cls(dict(edits), dict(contexts))

    def log_prob(self, ops) -> float:
        import math

        return sum(
            math.log((self.edits.get(self.key(*op), 0) + 0.5) / (self.contexts.get(self.context_key(*op), 0) + 13.5))
            for op in ops
        )


@dataclass(frozen=True)
class Candidate:
    word: str
    distance: int  # edit distance to the typed word (0: keep)


def candidate_features(
    typed: str,
    candidate: Candidate,
    lexicon: dict[str, float],
    in_context: bool,
    errors: ErrorModel | None = None,
    model_word: str | None = None,
) -> list[float]:
    """One row of FEATURES for `candidate` in place of `typed`; `model_word` is the seq2seq model's word there."""
    word = candidate.word
    keep = word == typed
    row = dict.fromkeys(FEATURES, 0.0)
    row["context"] = float(in_context)
    if keep:
        row["keep"] = 1.0
        row["keep_unknown"] = float(typed not in lexicon)
        row["keep_zipf"] = lexicon.get(typed, 0.0)
        return [row[name] for name in FEATURES]
    row["zipf"] = lexicon.get(word, 0.0)
    row["from_model"] = float(word == model_word)
    distance = candidate.distance
    row["distance_1" if distance == 1 else "distance_2" if distance == 2 else "distance_far"] = 1.0
    ops = edit_ops(typed, word)
    for kind, count in edit_kinds(typed, word, ops).items():
        row[kind] = float(count)
    if errors is not None:
        row["channel"] = errors.log_prob(ops) / 10
    row["first_letter"] = float(word[:1] != typed[:1])
    row["short_change"] = float(len(typed) <= 4)
    row["length_change"] = abs(len(word) - len(typed)) / max(1, len(typed))
    row["rare_candidate"] = float(row["zipf"] < 2.5)
    row["far_short"] = float(distance >= 2 and len(typed) <= 5)
    return [row[name] for name in FEATURES]


@dataclass
class WordReranker:
    """w . features, the candidate with the highest score wins; `keep_margin` is added to the typed word's score."""

    weights: dict[str, float]
    keep_margin: float = 0.0
    gate_zipf: float = 2.0  # words more frequent than this are never reconsidered
    max_candidates: int = 24  # per word, the most frequent near words kept for scoring
    candidate_min_zipf: float = 1.5  # the lexicon words that can be candidates
    errors: ErrorModel | None = None
    report: dict = field(default_factory=dict)

    def __post_init__(self):
        unknown = set(self.weights) - set(FEATURES)
        if unknown:
            raise ValueError(f"word reranker: unknown features {sorted(unknown)}")
        self._vector = [self.weights.get(name, 0.0) for name in FEATURES]

    def score(self, row: Sequence[float]) -> float:
        return sum(w * x for w, x in zip(self._vector, row))

    def choose(
        self,
        typed: str,
        candidates: Sequence[Candidate],
        lexicon: dict[str, float],
        context,
        model_word: str | None = None,
    ) -> str:
        """The winning word among `candidates` (which must include `typed` itself as distance 0)."""
        best_word, best_score = typed, float("-inf")
        for candidate in candidates:
            row = candidate_features(typed, candidate, lexicon, context(candidate.word), self.errors, model_word)
            value = self.score(row)
            if candidate.word == typed:
                value += self.keep_margin
            if value > best_score or (value == best_score and candidate.word < best_word):
                best_word, best_score = candidate.word, value
        return best_word

    def save(self, path: str | Path) -> None:
        body = {
            "features": list(FEATURES),
            "weights": {k: round(v, 6) for k, v in self.weights.items()},
            "keep_margin": self.keep_margin,
            "gate_zipf": self.gate_zipf,
            "max_candidates": self.max_candidates,
            "candidate_min_zipf": self.candidate_min_zipf,
            "report": self.report,
            "error_model": {"edits": self.errors.edits, "contexts": self.errors.contexts} if self.errors else None,
        }
        Path(path).write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "WordReranker":
        body = json.loads(Path(path).read_text(encoding="utf-8"))
        errors = body.get("error_model")
        return cls(
            body["weights"],
            body.get("keep_margin", 0.0),
            body.get("gate_zipf", 2.0),
            body.get("max_candidates", 24),
            body.get("candidate_min_zipf", 1.5),
            ErrorModel(errors["edits"], errors["contexts"]) if errors else None,
            body.get("report", {}),
        )
