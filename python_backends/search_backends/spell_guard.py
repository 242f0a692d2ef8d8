"""The no-damage guard: keep the model's correction only where it makes the query more plausible, word by word.

A seq2seq corrector sometimes "fixes" what was right ("taylor swift" -> "taylor swit") or garbles a name it
never learnt. The guard compares each word of the model's output with the word it replaces, using the Zipf
frequencies of the lexicon shipped with the checkpoint (`lexicon.tsv`: wordfreq's large English list, which
holds artist names, CC BY-SA 4.0):

- a word with a digit is never changed (years, "vol 2", "u2");
- a changed word is accepted only if the new word is in the lexicon and at least `min_gain` Zipf units
  (x10 per unit) more frequent than the word typed; an unknown typed word counts as Zipf 0;
- when the output has a different number of words (a space restored or removed), the output is accepted
  only if every changed word passes the same test as a whole phrase (its rarest word against the rarest
  typed word); otherwise the input comes back as typed.

Then the lexicon repair (on by default, `repair=True`). With the checkpoint's learnt reranker
(`word_reranker.json`, search_backends.spell_rerank), every word typed that the lexicon does not know or
knows as rarer than the reranker's gate is decided from what was typed: the candidates are the typed word,
the model's word at that place and the lexicon words within Damerau-Levenshtein distance 2 of either
(symspellpy's index over the lexicon's words of Zipf >= `candidate_min_zipf`), and the learnt score picks
one. Without that file, the hand-set formula: a word still unknown after the guard (or rarer than
`repair_below_zipf`) takes the candidate with the best Zipf frequency minus `distance_penalty` per edit plus
`context_bonus` when it forms a known two-word phrase with a neighbour (`bigrams.tsv`: adjacent words of
Wikipedia titles seen at least twice, plus symspellpy's English bigrams); a known rare word competes as
itself. Words with digits are never repaired.

The raw model output is unaffected (it stays equal to HF `generate()`); guard and repair are a separate,
documented step that a request can switch off.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .contracts.spell_correct import BIGRAMS_FILE, GUARD_INPUT, GUARD_PARAMETER, LEXICON_FILE, RERANKER_FILE
from .spell_rerank import Candidate, WordReranker


def write_lexicon(path: str | Path, lexicon: dict[str, float]) -> None:
    """`word<TAB>zipf` lines, most frequent first (stable for a given lexicon)."""
    rows = sorted(lexicon.items(), key=lambda kv: (-kv[1], kv[0]))
    Path(path).write_text("".join(f"{w}\t{z:.2f}\n" for w, z in rows), encoding="utf-8")


def read_lexicon(path: str | Path) -> dict[str, float]:
    out = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            word, _, zipf = line.rstrip("\n").partition("\t")
            if word:
                out[word] = float(zipf)
    return out


@functools.lru_cache(maxsize=4)
def _cached_lexicon(path: str, mtime_ns: int) -> dict[str, float]:
    return read_lexicon(path)


@functools.lru_cache(maxsize=4)
def _cached_repair(path: str, mtime_ns: int, options: tuple) -> "LexiconRepair":
    """The index takes ~12 s and ~0.5 GB to build (307 k words with the shipped reranker): one per lexicon file
    and process."""
    bigrams = read_bigrams(Path(path).with_name(BIGRAMS_FILE))
    reranker_path = Path(path).with_name(RERANKER_FILE)
    settings = dict(options)
    if settings.pop("use_reranker", True) and reranker_path.exists():
        settings["reranker"] = WordReranker.load(reranker_path)
    return LexiconRepair(_cached_lexicon(path, mtime_ns), bigrams, **settings)


def write_bigrams(path: str | Path, bigrams) -> None:
    Path(path).write_text("".join(f"{a} {b}\n" for a, b in sorted(bigrams)), encoding="utf-8")


def read_bigrams(path: str | Path | None) -> set[tuple[str, str]]:
    """The checkpoint's `bigrams.tsv` (if any) plus symspellpy's English bigram dictionary."""
    from importlib.resources import files

    out = set()
    sources = [Path(path)] if path and Path(path).exists() else []
    sources.append(Path(str(files("symspellpy") / "frequency_bigramdictionary_en_243_342.txt")))
    for source in sources:
        with open(source, encoding="utf-8") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) >= 2:
                    out.add((parts[0], parts[1]))
    return out


def lexicon_index(lexicon: dict[str, float], min_zipf: float, max_distance: int = 2, min_length: int = 1):
    """symspellpy index over the lexicon's words of Zipf >= `min_zipf`, counts = 10 ** Zipf."""
    from symspellpy import SymSpell
    from symspellpy.editdistance import DistanceAlgorithm, EditDistance

    # The C (editdistpy) Damerau-OSA distance, same values as symspellpy's default pure-Python one: the
    # repair's lookups over 300k words went from up to 32 ms per query to a few ms.
    index = SymSpell(
        max_dictionary_edit_distance=max_distance,
        prefix_length=7,
        distance_comparer=EditDistance(DistanceAlgorithm.DAMERAU_OSA_FAST),
    )
    for word, zipf in lexicon.items():
        if zipf >= min_zipf and len(word) >= min_length:
            index.create_dictionary_entry(word, max(1, int(10**zipf)))
    return index


def near_words(index, word: str, max_distance: int) -> dict[str, int]:
    """Every indexed word within Damerau-OSA `max_distance` of `word`, with its distance: the same set as
    symspellpy's `lookup(word, Verbosity.ALL, max_distance)` (tested), ~7x faster, because it skips the
    suggestion objects and their sorting and checks each candidate with the C distance once."""
    from editdistpy import damerau_osa

    found: set[str] = set()
    for delete in index._edits_prefix(word):  # the prefix deletes symspellpy matches against its index
        found.update(index._deletes.get(delete, ()))
    out = {}
    for candidate in found:
        distance = damerau_osa.distance(word, candidate, max_distance)
        if distance >= 0:
            out[candidate] = distance
    return out


# Delete keys whose word lists are at least this long are kept ranked by frequency, so that a short typed word
# ("kil": ~10k lexicon words within distance 2) is walked from its most frequent neighbours down and left as
# soon as no further word can make the kept candidates (LexiconRepair.candidates with a limit).
RANKED_LIST_MIN = 64


def ranked_deletes(index, lexicon: dict[str, float], min_length: int = RANKED_LIST_MIN) -> dict[str, list[str]]:
    """For each delete key of `index` with at least `min_length` words: its words by falling Zipf, then
    alphabetically (the same word objects as the index's lists: ~7 MB for the shipped lexicon's 6k keys)."""
    return {
        key: sorted(words, key=lambda word: (-lexicon.get(word, 0.0), word))
        for key, words in index._deletes.items()
        if len(words) >= min_length
    }


class LexiconRepair:
    """Best frequent lexicon word in place of a word the lexicon does not know (see the module docstring).

    With a `reranker` (the checkpoint's `word_reranker.json`), its learnt score picks among the same
    candidates and its `gate_zipf` says which words are reconsidered; without one, the hand-set formula does.
    """

    def __init__(
        self,
        lexicon: dict[str, float],
        bigrams: set[tuple[str, str]] | None = None,
        candidate_min_zipf: float = 1.5,
        distance_penalty: float = 4.5,
        context_bonus: float = 1.5,
        repair_below_zipf: float = 2.0,
        max_distance: int = 2,
        reranker: WordReranker | None = None,
    ):
        self.lexicon, self.bigrams = lexicon, bigrams or set()
        self.distance_penalty, self.context_bonus, self.max_distance = distance_penalty, context_bonus, max_distance
        self.repair_below_zipf = reranker.gate_zipf if reranker else repair_below_zipf
        self.reranker = reranker
        candidate_min_zipf = reranker.candidate_min_zipf if reranker else candidate_min_zipf
        self.index = lexicon_index(lexicon, candidate_min_zipf, max_distance, min_length=2)
        self.ranked = ranked_deletes(self.index, lexicon)

    def wants(self, word: str) -> bool:
        return word.isalpha() and len(word) >= 3 and self.lexicon.get(word, 0.0) <= self.repair_below_zipf

    def in_context(self, word: str, left: str | None, right: str | None) -> bool:
        return (left, word) in self.bigrams or (word, right) in self.bigrams

    def candidates(self, typed: str, others: Sequence[str] = (), limit: int | None = None) -> list[Candidate]:
        """`typed` itself (distance 0) and the lexicon words near it or near `others` (the model's word), with
        their distance to `typed`; beyond `limit`, the most frequent for their distance are kept."""
        if limit is not None:
            return self._top_candidates(typed, others, limit)
        from editdistpy import damerau_osa

        found: dict[str, int] = {}
        for source in (typed, *others):
            if source != typed and source in self.lexicon:
                found.setdefault(source, damerau_osa.distance(typed, source, 99))
            if len(source) < 3:
                continue
            for term, distance in near_words(self.index, source, self.max_distance).items():
                if term not in found:
                    found[term] = distance if source == typed else damerau_osa.distance(typed, term, 99)
        found.pop(typed, None)
        return self._ranked(typed, found, limit)

    def _ranked(self, typed: str, found: dict[str, int], limit: int | None) -> list[Candidate]:
        """`typed` first, then the `found` words (word -> distance to `typed`) by rank, Zipf minus 2 per edit (ties
        alphabetically), the first `limit` of them."""
        near = sorted(found.items(), key=lambda kv: (-(self.lexicon.get(kv[0], 0.0) - 2 * kv[1]), kv[0]))
        return [Candidate(typed, 0)] + [Candidate(word, distance) for word, distance in near[:limit]]

    def _top_candidates(self, typed: str, others: Sequence[str], limit: int) -> list[Candidate]:
        """:meth:`candidates` with a limit, equal to it (tested) without measuring every near word. A word's
        rank is its Zipf minus 2 per edit from `typed`, and every candidate but `typed` is at least one edit
        away, so once the `limit`-th best rank found beats a word's Zipf - 2, no rarer word can enter: the
        long delete lists are walked by falling Zipf and left there."""
        import heapq

        from editdistpy import damerau_osa

        lexicon, max_distance = self.lexicon, self.max_distance
        found: dict[str, int] = {}
        kept: list[float] = []  # min-heap of the best `limit` ranks so far: kept[0] is the bar to beat

        def consider(source: str, term: str) -> None:
            """`term` as a candidate if it is within reach of `source` (and not the typed word itself)."""
            if term in found or term == typed:
                return
            reach = damerau_osa.distance(source, term, max_distance)
            if reach < 0:
                return
            # Within reach of the typed word, that is already its distance; near the model's word, measure it.
            distance = found[term] = reach if source == typed else damerau_osa.distance(typed, term, 99)
            rank = lexicon.get(term, 0.0) - 2 * distance
            if len(kept) < limit:
                heapq.heappush(kept, rank)
            elif rank > kept[0]:
                heapq.heapreplace(kept, rank)

        for source in (typed, *others):
            if source != typed and source in lexicon:  # the model's word competes as itself
                consider(source, source)
            if len(source) < 3:
                continue
            walks, short = [], set()
            for delete in self.index._edits_prefix(source):
                if delete in self.ranked:
                    walks.append(self.ranked[delete])
                else:
                    short.update(self.index._deletes.get(delete, ()))
            for term in short:
                consider(source, term)
            # The bar only rises, so leaving one source's walk early stays exact for the rest.
            for term in heapq.merge(*walks, key=lambda word: (-lexicon.get(word, 0.0), word)):
                if len(kept) == limit and lexicon.get(term, 0.0) - 2 < kept[0]:
                    break
                consider(source, term)
        return self._ranked(typed, found, limit)

    def best(self, sources: Sequence[str], left: str | None = None, right: str | None = None) -> str | None:
        """The best candidate for the word typed/written as `sources` between neighbours `left` and `right`."""
        if self.reranker is not None:
            typed = sources[0]
            model_words = [s for s in sources[1:] if s != typed and s.isalpha()]
            found = self.candidates(typed, model_words, self.reranker.max_candidates)
            return self.reranker.choose(
                typed,
                found,
                self.lexicon,
                lambda w: self.in_context(w, left, right),
                model_words[0] if model_words else None,
            )

        def context(word: str) -> float:
            return self.context_bonus * self.in_context(word, left, right)

        scored: dict[str, float] = {}
        for source in sources:
            if source in self.lexicon:  # a known rare word competes as itself
                scored[source] = max(self.lexicon[source] + context(source), scored.get(source, float("-inf")))
            if len(source) < 3:
                continue
            for term, distance in near_words(self.index, source, self.max_distance).items():
                value = self.lexicon.get(term, 0.0) - self.distance_penalty * distance + context(term)
                scored[term] = max(value, scored.get(term, float("-inf")))
        return max(scored, key=lambda w: (scored[w], w)) if scored else None


@dataclass
class SpellGuard:
    lexicon: dict[str, float]
    min_gain: float = 1.0
    repair: LexiconRepair | None = None

    @classmethod
    def from_model_dir(
        cls, model_dir: str | Path, min_gain: float = 1.0, repair: bool = True, **repair_options
    ) -> "SpellGuard | None":
        path = Path(model_dir) / LEXICON_FILE
        if not path.exists():
            return None
        key = (str(path.resolve()), path.stat().st_mtime_ns)
        repairer = _cached_repair(*key, tuple(sorted(repair_options.items()))) if repair else None
        return cls(_cached_lexicon(*key), min_gain, repairer)

    def zipf(self, word: str) -> float:
        return self.lexicon.get(word, 0.0)

    def _accept(self, typed: Sequence[str], proposed: Sequence[str]) -> bool:
        if not proposed:
            return False
        if any(any(c.isdigit() for c in w) for w in (*typed, *proposed)):
            return False
        if any(w not in self.lexicon for w in proposed):
            return False
        typed_zipf = min((self.zipf(w) for w in typed), default=0.0)
        return min(self.zipf(w) for w in proposed) >= typed_zipf + self.min_gain

    def apply(self, source: str, corrected: str) -> str:
        """`corrected` with every change the lexicon does not support put back to `source`'s words, then
        the words the lexicon does not know repaired (when a repair index is set)."""
        places = self._guarded(source.split(), corrected.split())
        words = [kept for kept, _, _ in places]
        if self.repair is None:
            return " ".join(words)
        learnt = self.repair.reranker is not None
        for i, (kept, typed, proposed) in enumerate(places):
            # The learnt reranker decides from what was typed, with the model's word as one candidate; the
            # hand-set formula repairs what the guard kept, with the other side's word as a second source.
            word = typed if learnt else kept
            if not self.repair.wants(word):
                continue
            other = proposed if word == typed else typed
            left = words[i - 1] if i else None
            right = words[i + 1] if i + 1 < len(words) else None
            words[i] = self.repair.best((word, other), left, right) or kept
        return " ".join(words)

    def _guarded(self, typed: list[str], proposed: list[str]) -> list[tuple[str, str, str]]:
        """(kept word, typed word, model's word) for each word of the result; the last two differ only where
        the model replaced one word by one word."""
        if typed == proposed:
            return [(w, w, w) for w in typed]
        out: list[tuple[str, str, str]] = []
        matcher = difflib.SequenceMatcher(a=typed, b=proposed, autojunk=False)
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            if op == "equal":
                out += [(w, w, w) for w in typed[i1:i2]]
            elif op == "replace" and i2 - i1 == j2 - j1:
                for a, b in zip(typed[i1:i2], proposed[j1:j2]):  # word for word
                    out.append((b if self._accept([a], [b]) else a, a, b))
            elif op in ("replace", "insert") and i2 > i1 and self._accept(typed[i1:i2], proposed[j1:j2]):
                out += [(w, w, w) for w in proposed[j1:j2]]  # a split or merged word
            else:
                out += [(w, w, w) for w in typed[i1:i2]]  # a deleted word, an inserted one, or an unsupported change
        return out

    def apply_batch(self, sources: Sequence[str], corrected: Sequence[str]) -> list[str]:
        return [self.apply(s, c) for s, c in zip(sources, corrected)]

    def apply_where(self, sources: Sequence[str], corrected: Sequence[str], switches: Sequence[bool]) -> list[str]:
        """:meth:`apply` on the rows whose request switched the guard on; the others as the model wrote them."""
        return [self.apply(s, c) if on else c for s, c, on in zip(sources, corrected, switches)]


def guard_switch(value, parameters: dict) -> bool:
    """Whether the guard runs for one request: the GUARD input wins over the "guard" parameter; default on."""
    from .generation_controls import _scalar  # the controls' one-value rule, shared
    from .text_input import InputError

    if value is not None:
        try:
            return bool(_scalar(value))
        except InputError as exc:
            raise InputError(f"{GUARD_INPUT}: {exc}") from None
    if GUARD_PARAMETER not in parameters:
        return True
    raw = parameters[GUARD_PARAMETER]
    if isinstance(raw, bool):
        return raw
    table = {"true": True, "false": False, "1": True, "0": False}
    if str(raw).strip().lower() not in table:
        raise InputError(f"{GUARD_PARAMETER} must be true or false, got {raw!r}")
    return table[str(raw).strip().lower()]
