"""Searching a built catalog: FAISS in the model folder, or a Milvus collection; the same answer shape for both.

Triton-free: the catalog_search adapter, the in-process reference in the tests and the benchmarks all call
:func:`open_catalog`. Building lives in ``search_build.catalog.indexing``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence, cast

import numpy as np

from .contracts import search_bar as C


@dataclass(frozen=True)
class Hits:
    """One query's results, best first (possibly fewer than asked for)."""

    ids: list[str]
    titles: list[str]
    fields: list[str]  # JSON objects of the extra catalog fields
    scores: np.ndarray  # float32, inner product = cosine for normalised vectors


class Catalog(Protocol):
    size: int
    dim: int

    def search(self, queries: np.ndarray, k: int) -> list[Hits]: ...


def read_manifest(folder: str | Path) -> dict:
    return json.loads((Path(folder) / C.MANIFEST_FILE).read_text(encoding="utf-8"))


def check_queries(queries: np.ndarray, dim: int) -> np.ndarray:
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if queries.ndim != 2 or queries.shape[1] != dim:
        raise ValueError(f"{C.EMBEDDING}: expected [rows, {dim}] vectors, got shape {list(queries.shape)}")
    if not np.isfinite(queries).all():
        raise ValueError(f"{C.EMBEDDING}: vectors must be finite (no NaN or infinity)")
    return queries


def milvus_client(uri: str):
    """A client of the Milvus at ``uri``; credentials only from the environment, never from the repository."""
    from pymilvus import MilvusClient

    return MilvusClient(uri=uri, token=os.environ.get(C.MILVUS_TOKEN_ENV, ""))


def _no_hits(rows: int) -> list[Hits]:
    return [Hits([], [], [], np.zeros(0, np.float32)) for _ in range(rows)]


class ItemStore:
    """id, title and extra-field JSON of every item, in index row order."""

    def __init__(self, path: str | Path):
        import pyarrow.parquet as pq

        table = pq.read_table(path, columns=[C.ID_FIELD, C.TITLE_FIELD, C.FIELDS_FIELD])
        self.ids = np.array(table.column(C.ID_FIELD).to_pylist(), dtype=object)
        self.titles = np.array(table.column(C.TITLE_FIELD).to_pylist(), dtype=object)
        self.fields = np.array(table.column(C.FIELDS_FIELD).to_pylist(), dtype=object)

    def __len__(self) -> int:
        return len(self.ids)

    def hits(self, rows: np.ndarray, scores: np.ndarray) -> Hits:
        keep = rows >= 0  # FAISS marks "no result" with -1
        rows, scores = rows[keep], scores[keep]
        return Hits(
            self.ids[rows].tolist(), self.titles[rows].tolist(), self.fields[rows].tolist(), scores.astype(np.float32)
        )


class FaissCatalog:
    def __init__(self, folder: str | Path, threads: int = 1):
        import faiss

        folder = Path(folder)
        manifest = read_manifest(folder)
        self.threads = max(1, threads)
        self.index = faiss.read_index(str(folder / C.INDEX_FILE))
        if manifest["index"]["kind"] == C.INDEX_HNSW:
            # read_index returns the concrete class (IndexHNSWFlat here); faiss's stubs say Index.
            cast("faiss.IndexHNSW", self.index).hnsw.efSearch = int(manifest["index"]["ef_search"])
        self.items = ItemStore(folder / C.ITEMS_FILE)
        self.size, self.dim = self.index.ntotal, self.index.d
        if self.size != len(self.items):
            raise ValueError(
                f"{folder}: the index holds {self.size} vectors but the item store {len(self.items)} items"
            )

    def search(self, queries: np.ndarray, k: int) -> list[Hits]:
        import faiss

        queries = check_queries(queries, self.dim)
        k = min(k, self.size)
        if not len(queries) or k < 1:
            return _no_hits(len(queries))
        # OpenMP's thread count belongs to the calling thread: Triton and the admission worker search from threads
        # other than the one that opened the index, where FAISS would use every core and leave a team spinning
        # on the cores other instances' engines need.
        faiss.omp_set_num_threads(self.threads)
        scores, rows = self.index.search(queries, k)
        return [self.items.hits(r, s) for r, s in zip(rows, scores)]


class MilvusCatalog:
    """A Milvus collection (a Milvus cluster, a ``milvus-lite server``, or a local Milvus Lite ``.db``)."""

    def __init__(self, folder: str | Path):
        manifest = read_manifest(folder)
        milvus = manifest["milvus"]
        self.collection = milvus["collection"]
        self.client = milvus_client(milvus["uri"])
        self.size, self.dim = int(manifest["count"]), int(manifest["dim"])
        self.search_params = {"metric_type": "IP", "params": dict(milvus.get("search_params", {}))}
        self.client.load_collection(self.collection)

    def search(self, queries: np.ndarray, k: int) -> list[Hits]:
        queries = check_queries(queries, self.dim)
        k = min(k, self.size)
        if not len(queries) or k < 1:
            return _no_hits(len(queries))
        found = self.client.search(
            self.collection,
            data=queries.tolist(),
            limit=k,
            anns_field=C.VECTOR_FIELD,
            output_fields=[C.TITLE_FIELD, C.FIELDS_FIELD],
            search_params=self.search_params,
        )
        return [
            Hits(
                [h["id"] for h in row],
                [h["entity"][C.TITLE_FIELD] for h in row],
                [h["entity"][C.FIELDS_FIELD] for h in row],
                np.array([h["distance"] for h in row], dtype=np.float32),
            )
            for row in found
        ]


def open_catalog(folder: str | Path, threads: int = 1) -> Catalog:
    backend = read_manifest(folder)["backend"]
    if backend == C.BACKEND_FAISS:
        return FaissCatalog(folder, threads=threads)
    if backend == C.BACKEND_MILVUS:
        return MilvusCatalog(folder)
    raise ValueError(f"{folder}: unknown catalog backend {backend!r} (known: {', '.join(C.BACKENDS)})")


def padded(hits: Sequence[Hits]) -> dict[str, np.ndarray]:
    """Stack rows of results into [rows, width] arrays; short rows padded with MISSING_ID / MISSING_SCORE."""
    width = max((len(h.ids) for h in hits), default=0)
    ids = np.full((len(hits), width), C.MISSING_ID, dtype=object)
    titles = np.full((len(hits), width), "", dtype=object)
    fields = np.full((len(hits), width), "{}", dtype=object)
    scores = np.full((len(hits), width), C.MISSING_SCORE, dtype=np.float32)
    for row, h in enumerate(hits):
        n = len(h.ids)
        ids[row, :n], titles[row, :n], fields[row, :n], scores[row, :n] = h.ids, h.titles, h.fields, h.scores
    return {C.ITEM_IDS: ids, C.ITEM_TITLES: titles, C.ITEM_FIELDS: fields, C.SCORES: scores}


def top_k_of_request(values: np.ndarray | None, *, default: int = C.DEFAULT_TOP_K, maximum: int = C.MAX_TOP_K) -> int:
    """The request's TOP_K (one value for all its rows), validated; ValueError names the field."""
    if values is None or values.size == 0:
        return default
    flat = np.asarray(values).reshape(-1)
    if not np.issubdtype(flat.dtype, np.integer):
        raise ValueError(f"{C.TOP_K}: expected integers, got {flat.dtype}")
    if (flat != flat[0]).any():
        raise ValueError(f"{C.TOP_K}: every row of one request must ask for the same number of results")
    k = int(flat[0])
    if not 1 <= k <= maximum:
        raise ValueError(f"{C.TOP_K}: must be between 1 and {maximum}, got {k}")
    return k
