"""Build a searchable catalog: embed every item through the served embedding graph, then index it.

Embedding uses the very artifacts ``query_embedding`` serves (its tokenizer settings and its exported
encoder+pooling+normalisation graph, run by ONNX Runtime), so catalog and query vectors come from one model.
Items are embedded in length-sorted batches with a progress bar; finished chunks are kept in the cache under a
key of (catalog bytes, encoder graph, tokenizer settings), so an interrupted build resumes where it stopped.

Index (FAISS, ``faiss-cpu``): exact inner product (``IndexFlatIP``) up to ``EXACT_MAX_ITEMS`` items, HNSW
(``IndexHNSWFlat``, inner product, M / efConstruction / efSearch recorded in the manifest) above, unless the
kind is given. Or a Milvus collection (FLAT or HNSW, inner product) at a URI: a Milvus cluster, a
``milvus-lite server``, or a local Milvus Lite ``.db`` path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from search_backends.contracts import search_bar as C
from search_backends.contracts.product_search import IDS

from search_build.repository.artifacts import cache_root, materialize
from search_build.catalog.items import CatalogItems

CHUNK_ITEMS = 8192
BATCH_ITEMS = 256
EMBEDDER_VERSION = "1"


@dataclass(frozen=True)
class IndexSettings:
    backend: str = C.BACKEND_FAISS
    kind: str = "auto"  # auto | flat | hnsw
    hnsw_m: int = C.HNSW_M
    ef_construction: int = C.HNSW_EF_CONSTRUCTION
    ef_search: int = C.HNSW_EF_SEARCH
    milvus_uri: str | None = None
    milvus_collection: str = "searchbar_catalog"

    def __post_init__(self) -> None:
        if self.backend not in C.BACKENDS:
            raise ValueError(f"catalog backend must be one of {', '.join(C.BACKENDS)}, got {self.backend!r}")
        if self.kind not in C.INDEX_KINDS:
            raise ValueError(f"index kind must be one of {', '.join(C.INDEX_KINDS)}, got {self.kind!r}")
        if self.backend == C.BACKEND_MILVUS and not self.milvus_uri:
            raise ValueError(
                "the milvus backend needs a Milvus URI (--milvus-uri: a Milvus cluster, a milvus-lite "
                "server, or a .db path)"
            )

    def resolved_kind(self, count: int) -> str:
        if self.kind == "auto":
            return C.INDEX_FLAT if count <= C.EXACT_MAX_ITEMS else C.INDEX_HNSW
        return self.kind

    def key(self) -> str:
        return f"{self.backend}|{self.kind}|{self.hnsw_m}|{self.ef_construction}|{self.ef_search}"


class CatalogEmbedder:
    """Texts -> the served query_embedding vectors, in-process (ONNX Runtime over the served graph)."""

    def __init__(self, embedding_pipeline, threads: int = 0):
        import onnxruntime as ort

        from search_backends.contracts.query_embedding import (
            ENCODER,
            TEXT_INPUT_PARAMETER,
            TOKENIZE,
            TOKENIZER_DIR_PARAMETER,
        )
        from search_backends.graph_engines import GRAPH_FILE
        from search_backends.tokenization import BatchTokenizer

        encoder = embedding_pipeline.model(ENCODER)
        if encoder.tokenizer is not None:  # local: the tokenizer lives in the encoder's own stub
            fused = encoder.tokenizer
            artifact = fused.artifact  # the tokenizer stub's parameters, so vectors cached by either shape match
            params = {
                TOKENIZER_DIR_PARAMETER: artifact.dest,
                **fused.parameters,
                TEXT_INPUT_PARAMETER: fused.text_input.name,
            }
        else:
            tokenize = embedding_pipeline.model(TOKENIZE)
            artifact, params = tokenize.artifacts[0], tokenize.parameters
        self._tmp = Path(tempfile.mkdtemp(prefix="catalog-embedder-"))
        materialize(artifact, self._tmp / artifact.dest)
        onnx_path = materialize(encoder.onnx, self._tmp / GRAPH_FILE)
        self.tokenizer = BatchTokenizer.from_parameters(self._tmp, params)  # the stub's own reading of them
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or (os.cpu_count() or 1)
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.dim = int(self.session.get_outputs()[0].shape[-1])
        self.key = hashlib.sha256(
            f"{EMBEDDER_VERSION}|{encoder.onnx.cache_key}|{sorted(params.items())}".encode()
        ).hexdigest()[:20]

    def encode(self, texts: list[str], batch_size: int = BATCH_ITEMS) -> np.ndarray:
        """Vectors in the order of ``texts``; batches are length-sorted so little padding is computed."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        lengths = [len(e.ids) for e in self.tokenizer.tokenizer.encode_batch(texts)] if texts else []
        order = np.argsort(lengths, kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = self.tokenizer.encode([texts[i] for i in rows])
            feeds = {name: getattr(batch, name) for name in IDS if name in self.input_names}
            out[rows] = self.session.run(None, feeds)[0]
        return out

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)


def embed_items(items: CatalogItems, embedder: CatalogEmbedder, *, progress: bool = True) -> np.ndarray:
    """Every title's vector; chunks already embedded by an interrupted run of the same key are reused."""
    from tqdm import tqdm

    folder = cache_root() / "catalog-embeddings" / f"{items.sha256[:20]}-{embedder.key}"
    folder.mkdir(parents=True, exist_ok=True)
    chunks = []
    with tqdm(total=len(items), unit="item", desc="embedding catalog", disable=not progress) as bar:
        for n, start in enumerate(range(0, len(items), CHUNK_ITEMS)):
            path = folder / f"chunk_{n:06d}.npy"
            stop = min(start + CHUNK_ITEMS, len(items))
            if path.exists():
                vectors = np.load(path)
            else:
                vectors = embedder.encode(items.titles[start:stop])
                tmp = path.with_suffix(".tmp.npy")
                np.save(tmp, vectors)
                os.replace(tmp, path)
            chunks.append(vectors)
            bar.update(stop - start)
    return np.concatenate(chunks) if chunks else np.zeros((0, embedder.dim), np.float32)


def build_faiss_index(vectors: np.ndarray, kind: str, settings: IndexSettings):
    import faiss

    faiss.omp_set_num_threads(os.cpu_count() or 1)  # building uses every core (a searcher may have set 1)
    dim = vectors.shape[1]
    if kind == C.INDEX_FLAT:
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexHNSWFlat(dim, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = settings.ef_construction
        index.hnsw.efSearch = settings.ef_search
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def write_items(path: Path, items: CatalogItems) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({C.ID_FIELD: items.ids, C.TITLE_FIELD: items.titles, C.FIELDS_FIELD: items.fields}), path)


def write_milvus_collection(
    uri: str,
    collection: str,
    items: CatalogItems,
    vectors: np.ndarray,
    kind: str,
    settings: IndexSettings,
    batch: int = 2000,
) -> dict:
    """(Re)create ``collection`` at ``uri`` holding every item; returns the index/search parameters used."""
    from pymilvus import DataType, MilvusClient
    from tqdm import tqdm

    from search_backends.catalog_index import milvus_client

    client = milvus_client(uri)
    if client.has_collection(collection):
        client.drop_collection(collection)
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field(C.ID_FIELD, DataType.VARCHAR, is_primary=True, max_length=C.MAX_ID_CHARS)
    schema.add_field(C.VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=int(vectors.shape[1]))
    schema.add_field(C.TITLE_FIELD, DataType.VARCHAR, max_length=C.MAX_TITLE_CHARS * 4)  # VARCHAR counts bytes
    schema.add_field(C.FIELDS_FIELD, DataType.VARCHAR, max_length=min(C.MAX_FIELDS_CHARS * 4, 65535))  # Milvus max
    index_params = client.prepare_index_params()
    if kind == C.INDEX_FLAT:
        index = {"index_type": "FLAT", "params": {}}
        search_params: dict = {}
    else:
        index = {"index_type": "HNSW", "params": {"M": settings.hnsw_m, "efConstruction": settings.ef_construction}}
        search_params = {"ef": settings.ef_search}
    index_params.add_index(field_name=C.VECTOR_FIELD, metric_type="IP", **index)
    client.create_collection(collection, schema=schema, index_params=index_params)
    for start in tqdm(range(0, len(items), batch), desc="milvus insert", unit="batch"):
        stop = min(start + batch, len(items))
        client.insert(
            collection,
            [
                {
                    C.ID_FIELD: items.ids[i],
                    C.VECTOR_FIELD: vectors[i].tolist(),
                    C.TITLE_FIELD: items.titles[i],
                    C.FIELDS_FIELD: items.fields[i],
                }
                for i in range(start, stop)
            ],
        )
    client.flush(collection)
    client.load_collection(collection)
    client.close()
    return {"index": index, "search_params": search_params}


def write_catalog(
    folder: str | Path,
    items: CatalogItems,
    vectors: np.ndarray,
    settings: IndexSettings,
    embedding_key: str,
    embed_seconds: float = 0.0,
) -> dict:
    """Write the index (or fill the Milvus collection), the item store and ``catalog.json``; returns the manifest."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    kind = settings.resolved_kind(len(items))
    started = time.perf_counter()
    manifest = {
        "backend": settings.backend,
        "count": len(items),
        "dim": int(vectors.shape[1]),
        "catalog_sha256": items.sha256,
        "embedding_key": embedding_key,
        "metric": "inner_product (vectors L2-normalised: cosine)",
    }
    if settings.backend == C.BACKEND_FAISS:
        import faiss

        index = build_faiss_index(vectors, kind, settings)
        faiss.write_index(index, str(folder / C.INDEX_FILE))
        write_items(folder / C.ITEMS_FILE, items)
        manifest["index"] = {"kind": kind, "faiss": type(index).__name__, "faiss_version": faiss.__version__}
        if kind == C.INDEX_HNSW:
            manifest["index"].update(
                m=settings.hnsw_m, ef_construction=settings.ef_construction, ef_search=settings.ef_search
            )
    else:  # Milvus (IndexSettings allows no other backend)
        params = write_milvus_collection(
            settings.milvus_uri, settings.milvus_collection, items, vectors, kind, settings
        )
        manifest["index"] = {"kind": kind, **params["index"]}
        manifest["milvus"] = {
            "uri": settings.milvus_uri,
            "collection": settings.milvus_collection,
            "search_params": params["search_params"],
        }
    manifest["build_seconds"] = {"embed": round(embed_seconds, 2), "index": round(time.perf_counter() - started, 2)}
    (folder / C.MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def build_catalog(
    folder: str | Path, items: CatalogItems, embedding_pipeline, settings: IndexSettings, *, progress: bool = True
) -> dict:
    embedder = CatalogEmbedder(embedding_pipeline)
    try:
        started = time.perf_counter()
        vectors = embed_items(items, embedder, progress=progress)
        seconds = time.perf_counter() - started
        manifest = write_catalog(folder, items, vectors, settings, embedder.key, seconds)
    finally:
        embedder.close()
    if progress:
        print(
            f"catalog: {manifest['count']} items, {manifest['backend']} {manifest['index']['kind']} index, "
            f"embedded in {manifest['build_seconds']['embed']} s, indexed in {manifest['build_seconds']['index']} s"
        )
    return manifest
