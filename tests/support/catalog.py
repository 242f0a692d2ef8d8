"""A small catalog for the tests: two-word phrases of Wikipedia titles (the spell model's bigrams.tsv)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIGRAMS = ROOT / "models" / "spell_bart" / "bigrams.tsv"
TEST_CATALOG_ITEMS = 3000


def write_test_catalog(path: Path, count: int = TEST_CATALOG_ITEMS) -> Path:
    """``count`` phrases, spread evenly over the list, with two extra fields; the same file every time."""
    if path.exists():
        return path
    phrases = [line.strip() for line in BIGRAMS.read_text(encoding="utf-8").splitlines() if line.strip()]
    step = max(1, len(phrases) // count)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "title", "rank", "first_word"])
        for n, phrase in enumerate(phrases[::step][:count]):
            writer.writerow([f"item-{n:05d}", phrase.title(), n, phrase.split()[0]])
    os.replace(tmp, path)
    return path


def catalog_for_tests() -> Path:
    root = Path(os.environ.get("SEARCHBAR_CACHE", ROOT / ".cache"))
    return write_test_catalog(root / "test_catalog" / f"phrases_{TEST_CATALOG_ITEMS}.csv")
