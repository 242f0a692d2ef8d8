"""Seeded (misspelled query -> correct query) pairs for training the spell corrector.

Words come from the `wordfreq` package (PyPI; English frequency list, shipped offline inside the wheel).
Queries are 1-3 lowercase words, sampled with weight sqrt(frequency) so common words dominate the way
they do in real search traffic without drowning the tail.

Typos (one per query, sometimes two) imitate fast typing on a QWERTY keyboard: a deleted letter, an
inserted neighbouring key, a neighbouring key substituted, two letters swapped, a letter doubled, and
for multi-word queries a lost space. A typo that happens to produce another vocabulary word ("form" ->
"from") is rejected: the model cannot know which one was meant. A share of queries is left intact so
the model learns to leave correct input alone.

The vocabulary is split *by word* (stable hash of the word and the seed): held-out words never appear
in any training query, so accuracy on them measures generalisation, not memorised pairs.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from functools import cached_property

QWERTY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def keyboard_neighbours() -> dict[str, str]:
    """Letters physically adjacent on a QWERTY keyboard (same row and the rows above/below)."""
    pos = {ch: (r, c) for r, row in enumerate(QWERTY_ROWS) for c, ch in enumerate(row)}
    out = {}
    for ch, (r, c) in pos.items():
        near = [
            other
            for other, (r2, c2) in pos.items()
            if other != ch and abs(r - r2) <= 1 and -1 <= (c2 - c) + 0.5 * (r2 - r) <= 1
        ]
        out[ch] = "".join(sorted(near))
    return out


NEIGHBOURS = keyboard_neighbours()
TYPO_KINDS = ("delete", "insert", "substitute", "transpose", "double")


def load_vocabulary(size: int = 12000, min_len: int = 3, max_len: int = 14) -> list[tuple[str, float]]:
    """Most frequent plain-ASCII English words as (word, frequency), most frequent first."""
    import wordfreq  # build-time dependency only

    words = []
    for word in wordfreq.top_n_list("en", size * 2):
        if min_len <= len(word) <= max_len and word.isascii() and word.isalpha():
            words.append((word, wordfreq.word_frequency(word, "en")))
        if len(words) == size:
            break
    return words


def is_held_out(word: str, seed: int, held_out_fraction: float) -> bool:
    """Stable across runs and Python versions (unlike hash())."""
    digest = hashlib.sha256(f"{seed}:{word}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < held_out_fraction


def misspell_word(word: str, rng: random.Random, kind: str | None = None) -> str:
    """One keyboard typo of `word`; may return `word` unchanged when the typo is a no-op (e.g. swapping "oo")."""
    kind = kind or rng.choice(TYPO_KINDS)
    i = rng.randrange(len(word))
    ch = word[i]
    near = NEIGHBOURS.get(ch) or "abcdefghijklmnopqrstuvwxyz"
    if kind == "delete":
        return word[:i] + word[i + 1 :]
    if kind == "insert":
        return word[:i] + rng.choice(near) + word[i:]
    if kind == "substitute":
        return word[:i] + rng.choice(near) + word[i + 1 :]
    if kind == "transpose":
        i = min(i, len(word) - 2)
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == "double":
        return word[: i + 1] + ch + word[i + 1 :]
    raise ValueError(f"unknown typo kind {kind!r}")


@dataclass(frozen=True)
class SpellPairGenerator:
    """Endless seeded stream of (noisy, clean) query pairs over one side of the word split."""

    words: tuple[str, ...]
    weights: tuple[float, ...]
    vocabulary: frozenset[str]  # every known word (both splits), to reject real-word typos
    identity_rate: float = 0.15
    second_typo_rate: float = 0.2
    merge_space_rate: float = 0.05
    max_words: int = 3

    @cached_property
    def _cum_weights(self) -> list[float]:
        total, out = 0.0, []
        for w in self.weights:
            total += w
            out.append(total)
        return out

    def query(self, rng: random.Random) -> list[str]:
        n = rng.choices((1, 2, 3), weights=(0.5, 0.35, 0.15))[0] if self.max_words >= 3 else 1
        return rng.choices(self.words, cum_weights=self._cum_weights, k=min(n, self.max_words))

    def pair(self, rng: random.Random) -> tuple[str, str]:
        words = self.query(rng)
        clean = " ".join(words)
        if rng.random() < self.identity_rate:
            return clean, clean
        noisy = list(words)
        n_typos = 2 if rng.random() < self.second_typo_rate else 1
        for _ in range(n_typos):
            j = rng.randrange(len(noisy))
            for _attempt in range(5):
                candidate = misspell_word(noisy[j], rng)
                if candidate != noisy[j] and candidate not in self.vocabulary and candidate:
                    noisy[j] = candidate
                    break
        text = " ".join(noisy)
        if len(noisy) > 1 and rng.random() < self.merge_space_rate:
            spaces = [k for k, c in enumerate(text) if c == " "]
            k = rng.choice(spaces)
            text = text[:k] + text[k + 1 :]
        return text, clean

    def pairs(self, n: int, seed: int) -> list[tuple[str, str]]:
        rng = random.Random(seed)
        return [self.pair(rng) for _ in range(n)]


@dataclass(frozen=True)
class SpellDataset:
    """Word-level train / held-out split of the vocabulary, with a pair generator for each side."""

    train: SpellPairGenerator
    held_out: SpellPairGenerator


def build_dataset(
    vocab_size: int = 12000, held_out_fraction: float = 0.05, seed: int = 0, identity_rate: float = 0.15
) -> SpellDataset:
    vocab = load_vocabulary(vocab_size)
    known = frozenset(w for w, _ in vocab)
    train = [(w, f**0.5) for w, f in vocab if not is_held_out(w, seed, held_out_fraction)]
    held = [(w, f**0.5) for w, f in vocab if is_held_out(w, seed, held_out_fraction)]

    def generator(side: list[tuple[str, float]]) -> SpellPairGenerator:
        words, weights = zip(*side)
        return SpellPairGenerator(words, weights, known, identity_rate=identity_rate)

    return SpellDataset(train=generator(train), held_out=generator(held))


def held_out_pairs(dataset: SpellDataset, n: int, seed: int) -> list[tuple[str, str]]:
    """Evaluation pairs whose misspelled word is never seen in training; the context words are training words.

    Each query is a held-out word (typo'd, or intact at the identity rate) placed among 0-2 training words.
    """
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        target = dataset.held_out.query(rng)[0]
        context = dataset.train.query(rng)[: rng.choice((0, 0, 1, 2))]
        at = rng.randrange(len(context) + 1)
        words = context[:at] + [target] + context[at:]
        clean = " ".join(words)
        noisy = clean
        if rng.random() >= dataset.held_out.identity_rate:
            for _attempt in range(5):
                candidate = misspell_word(target, rng)
                if candidate and candidate != target and candidate not in dataset.held_out.vocabulary:
                    noisy = " ".join(words[:at] + [candidate] + words[at + 1 :])
                    break
        out.append((noisy, clean))
    return out
