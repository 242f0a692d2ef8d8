"""catalog_search and search_bar: the catalog builder, FAISS and Milvus search, and the served pipelines.

Served results are compared with an in-process search of the very index folder the server loaded, stage outputs
with the stage models called on their own, and catalog vectors with the served query_embedding.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from support.serving import SERVED_PIPELINES, string_input
from search_backends.contracts import search_bar as C
from search_backends.catalog_index import FaissCatalog, MilvusCatalog, open_catalog
from search_build.catalog import indexing
from search_build.catalog.indexing import CatalogEmbedder, IndexSettings, embed_items, write_catalog
from search_build.catalog.items import read_catalog
from search_build.pipelines import build_pipeline
from search_tools.server import free_port

served_catalog = pytest.mark.skipif(C.CATALOG_SEARCH not in SERVED_PIPELINES, reason="catalog_search not served")
served_bar = pytest.mark.skipif(C.SEARCH_BAR not in SERVED_PIPELINES, reason="search_bar not served")


@pytest.fixture(scope="module")
def catalog_file():
    import os

    return Path(os.environ["SEARCHBAR_CATALOG"])


@pytest.fixture(scope="module")
def items(catalog_file):
    return read_catalog(catalog_file)


@pytest.fixture(scope="module")
def embedder():
    e = CatalogEmbedder(build_pipeline(C.EMBEDDING_ENTRY))
    yield e
    e.close()


@pytest.fixture(scope="module")
def vectors(items, embedder):
    return embed_items(items, embedder, progress=False)


@pytest.fixture(scope="module")
def flat_folder(items, vectors, embedder, tmp_path_factory):
    folder = tmp_path_factory.mktemp("flat") / C.CATALOG_DIR
    write_catalog(folder, items, vectors, IndexSettings(kind=C.INDEX_FLAT), embedder.key)
    return folder


# ---- catalog files ------------------------------------------------------------------------------------------


def test_catalog_vectors_are_sentence_transformers_vectors(items, vectors):
    from sentence_transformers import SentenceTransformer

    from search_build.export.sentence_checkpoint import default_embedding_checkpoint

    model = SentenceTransformer(str(default_embedding_checkpoint()), device="cpu")
    rows = np.arange(0, len(items), len(items) // 40)
    want = model.encode([items.titles[i] for i in rows], normalize_embeddings=True)
    assert (np.sum(want * vectors[rows], axis=1)).min() >= 0.9999


def test_embedding_resumes_from_finished_chunks(items, embedder, vectors, monkeypatch, tmp_path):
    monkeypatch.setenv("SEARCHBAR_CACHE", str(tmp_path))
    monkeypatch.setattr(indexing, "CHUNK_ITEMS", 1000)
    first = embed_items(items, embedder, progress=False)
    chunks = sorted((tmp_path / "artifacts" / "catalog-embeddings").rglob("chunk_*.npy"))
    assert len(chunks) == -(-len(items) // 1000)
    chunks[1].unlink()  # as if the build died while embedding chunk 1
    calls = []
    real = embedder.encode
    monkeypatch.setattr(embedder, "encode", lambda texts, **kw: calls.append(len(texts)) or real(texts, **kw))
    again = embed_items(items, embedder, progress=False)
    assert calls == [1000], "only the missing chunk is embedded again"
    np.testing.assert_allclose(again, first, atol=1e-6)
    np.testing.assert_allclose(first, vectors, atol=1e-5)  # chunking does not change a vector


def test_hnsw_recall_against_exact(items, vectors, embedder, flat_folder, tmp_path):
    hnsw_dir = tmp_path / C.CATALOG_DIR
    manifest = write_catalog(hnsw_dir, items, vectors, IndexSettings(kind=C.INDEX_HNSW), embedder.key)
    assert manifest["index"] == {
        **manifest["index"],
        "kind": C.INDEX_HNSW,
        "m": C.HNSW_M,
        "ef_construction": C.HNSW_EF_CONSTRUCTION,
        "ef_search": C.HNSW_EF_SEARCH,
    }
    queries = embedder.encode(
        [
            "love songs",
            "rock band",
            "new york",
            "the black keys",
            "summer night",
            "jazz piano",
            "football club",
            "queen",
            "dark side of the moon",
            "river song",
        ]
    )
    exact, approx = FaissCatalog(flat_folder).search(queries, 10), open_catalog(hnsw_dir).search(queries, 10)
    recall = np.mean([len(set(a.ids) & set(e.ids)) / 10 for a, e in zip(approx, exact)])
    assert recall >= 0.95, recall
    # Exact search is exact: each item's own title finds the item first.
    self_hits = FaissCatalog(flat_folder).search(vectors[:50], 1)
    assert [h.ids[0] for h in self_hits] == items.ids[:50] or sum(
        h.ids[0] == i for h, i in zip(self_hits, items.ids[:50])
    ) >= 48  # duplicate titles may tie


def test_search_guards_its_inputs(flat_folder):
    catalog = FaissCatalog(flat_folder)
    with pytest.raises(ValueError, match="EMBEDDING"):
        catalog.search(np.zeros((1, 5), np.float32), 3)
    with pytest.raises(ValueError, match="finite"):
        catalog.search(np.full((1, catalog.dim), np.nan, np.float32), 3)
    assert [len(h.ids) for h in catalog.search(np.ones((2, catalog.dim), np.float32), catalog.size + 50)] == [
        catalog.size
    ] * 2


def test_search_keeps_its_thread_count_in_the_thread_that_searches(flat_folder):
    """OpenMP's thread count is per calling thread: a catalog opened with one thread and searched from another
    thread (Triton's, the admission worker's) must not run a team over every core there. On 2 cores that team's
    spinning cost the served search bar 20% of its throughput."""
    import os
    import threading

    import faiss

    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: OpenMP's default is already one thread")
    catalog = FaissCatalog(flat_folder, threads=1)
    seen = {}

    def search_here():
        seen["default"] = faiss.omp_get_max_threads()
        catalog.search(np.ones((4, catalog.dim), np.float32), 3)
        seen["searched"] = faiss.omp_get_max_threads()

    worker = threading.Thread(target=search_here)
    worker.start()
    worker.join()
    assert seen["default"] > 1, "this thread starts with OpenMP's default (every core), or the test proves nothing"
    assert seen["searched"] == 1


def _floats(name, array):
    t = grpcclient.InferInput(name, list(array.shape), "FP32")
    t.set_data_from_numpy(np.ascontiguousarray(array, np.float32))
    return t


def _ints(name, array):
    t = grpcclient.InferInput(name, list(array.shape), "INT32")
    t.set_data_from_numpy(np.ascontiguousarray(array, np.int32))
    return t


def _bools(name, values):
    t = grpcclient.InferInput(name, [len(values), 1], "BOOL")
    t.set_data_from_numpy(np.array(values, dtype=bool).reshape(-1, 1))
    return t


def _decoded(array):
    return [[v.decode("utf-8") for v in row] for row in array]


def _served_embeddings(client, texts):
    return client.infer(C.EMBEDDING_ENTRY, [string_input(grpcclient, "TEXT", texts)]).as_numpy(C.EMBEDDING_OUTPUT)


@pytest.fixture(scope="module")
def served_catalog_dir(model_repository):
    return model_repository / C.CATALOG_SEARCH / "1" / C.CATALOG_DIR


@served_catalog
def test_served_catalog_search_equals_in_process_search(grpc_client, served_catalog_dir):
    import concurrent.futures as cf

    reference = open_catalog(served_catalog_dir)
    queries = _served_embeddings(
        grpc_client,
        [
            "love songs",
            "metallica",
            "the rolling stones",
            "new york city",
            "summer of love",
            "piano",
            "black and white",
            "queen",
        ],
    )

    def ask(rows, k):
        r = grpc_client.infer(
            C.CATALOG_SEARCH, [_floats(C.EMBEDDING, queries[rows]), _ints(C.TOP_K, np.full((len(rows), 1), k))]
        )
        return r

    with cf.ThreadPoolExecutor(4) as pool:  # concurrent requests with different k share dynamic batches
        futures = {
            (tuple(rows), k): pool.submit(ask, rows, k)
            for rows, k in (([0, 1], 10), ([2], 3), ([3, 4, 5], 25), ([6, 7], 1))
        }
        for (rows, k), future in futures.items():
            result = future.result()
            want = reference.search(queries[list(rows)], k)
            assert _decoded(result.as_numpy(C.ITEM_IDS)) == [h.ids for h in want]
            assert _decoded(result.as_numpy(C.ITEM_TITLES)) == [h.titles for h in want]
            np.testing.assert_allclose(result.as_numpy(C.SCORES), np.stack([h.scores for h in want]), atol=1e-5)
            fields = [json.loads(f) for f in _decoded(result.as_numpy(C.ITEM_FIELDS))[0]]
            assert all(set(f) == {"rank", "first_word"} for f in fields)  # the catalog's extra columns


@served_catalog
def test_served_catalog_holds_the_served_embeddings(grpc_client, served_catalog_dir):
    import faiss

    store = open_catalog(served_catalog_dir)
    index = faiss.read_index(str(served_catalog_dir / C.INDEX_FILE))
    rows = list(range(0, store.size, store.size // 16))
    titles = [store.items.titles[i] for i in rows]
    stored = np.stack([index.reconstruct(i) for i in rows])
    assert np.sum(stored * _served_embeddings(grpc_client, titles), axis=1).min() >= 0.9999


@served_catalog
@pytest.mark.parametrize(
    "inputs, field",
    [
        (lambda dim: [_floats(C.EMBEDDING, np.full((1, dim), np.nan))], "EMBEDDING"),
        (lambda dim: [_floats(C.EMBEDDING, np.ones((1, dim))), _ints(C.TOP_K, np.array([[0]]))], "TOP_K"),
        (lambda dim: [_floats(C.EMBEDDING, np.ones((1, dim))), _ints(C.TOP_K, np.array([[C.MAX_TOP_K + 1]]))], "TOP_K"),
        (lambda dim: [_floats(C.EMBEDDING, np.ones((2, dim))), _ints(C.TOP_K, np.array([[2], [3]]))], "TOP_K"),
    ],
)
def test_served_catalog_search_rejects_bad_input(grpc_client, served_catalog_dir, inputs, field):
    dim = open_catalog(served_catalog_dir).dim
    with pytest.raises(InferenceServerException) as info:
        grpc_client.infer(C.CATALOG_SEARCH, inputs(dim))
    assert "INVALID_ARG" in str(info.value.status()) and field in info.value.message()
    ok = grpc_client.infer(C.CATALOG_SEARCH, [_floats(C.EMBEDDING, np.ones((1, dim)) / np.sqrt(dim))])
    assert ok.as_numpy(C.ITEM_IDS).shape == (1, C.DEFAULT_TOP_K)


@served_bar
def test_search_bar_equals_its_stages(grpc_client, served_catalog_dir):
    texts = ["metalica enter sandman", "tayler swift love story", "wireless headphones"]
    result = grpc_client.infer(
        C.SEARCH_BAR, [string_input(grpcclient, C.TEXT, texts), _ints(C.TOP_K, np.full((3, 1), 7))]
    )
    corrected = [row[0] for row in _decoded(result.as_numpy(C.CORRECTED))]
    spell = grpc_client.infer(C.SPELL_ENTRY, [string_input(grpcclient, "TEXT", texts)])
    assert corrected == [row[0] for row in _decoded(spell.as_numpy(C.SPELL_OUTPUT))]
    assert corrected[0] != texts[0], "the misspelled query is corrected"
    intent = grpc_client.infer(C.INTENT_ENTRY, [string_input(grpcclient, "TEXT", corrected)])
    assert _decoded(result.as_numpy(C.INTENT)) == _decoded(intent.as_numpy(C.INTENT_LABEL))
    np.testing.assert_allclose(result.as_numpy(C.INTENT_PROBABILITIES), intent.as_numpy(C.INTENT_PROBS), atol=1e-6)
    want = open_catalog(served_catalog_dir).search(_served_embeddings(grpc_client, corrected), 7)
    assert _decoded(result.as_numpy(C.ITEM_IDS)) == [h.ids for h in want]
    np.testing.assert_allclose(result.as_numpy(C.SCORES), np.stack([h.scores for h in want]), atol=1e-5)


@served_bar
def test_search_bar_switches(grpc_client, served_catalog_dir):
    text = ["metalica enter sandman"]
    off = grpc_client.infer(
        C.SEARCH_BAR,
        [string_input(grpcclient, C.TEXT, text), _bools(C.CORRECT_SPELLING, [False]), _bools(C.DETECT_INTENT, [False])],
    )
    assert _decoded(off.as_numpy(C.CORRECTED)) == [text]
    assert _decoded(off.as_numpy(C.INTENT)) == [[""]] and not off.as_numpy(C.INTENT_PROBABILITIES).any()
    want = open_catalog(served_catalog_dir).search(_served_embeddings(grpc_client, text), C.DEFAULT_TOP_K)
    assert _decoded(off.as_numpy(C.ITEM_IDS)) == [want[0].ids]


@served_bar
def test_search_bar_bad_request_does_not_disturb_others(grpc_client):
    import concurrent.futures as cf

    def good():
        return grpc_client.infer(C.SEARCH_BAR, [string_input(grpcclient, C.TEXT, ["lofi beats"])])

    def bad(inputs):
        with pytest.raises(InferenceServerException) as info:
            grpc_client.infer(C.SEARCH_BAR, inputs)
        return info.value

    with cf.ThreadPoolExecutor(6) as pool:
        goods = [pool.submit(good) for _ in range(3)]
        errors = [
            pool.submit(bad, [string_input(grpcclient, C.TEXT, [""])]),
            pool.submit(bad, [string_input(grpcclient, C.TEXT, ["a"]), _ints(C.TOP_K, np.array([[C.MAX_TOP_K + 1]]))]),
            pool.submit(bad, [string_input(grpcclient, C.TEXT, ["a", "b"]), _bools(C.CORRECT_SPELLING, [True, False])]),
        ]
        reference = good()
        for g in goods:
            assert _decoded(g.result().as_numpy(C.ITEM_IDS)) == _decoded(reference.as_numpy(C.ITEM_IDS))
        for e, field in zip(errors, ("TEXT", "TOP_K", "CORRECT_SPELLING")):
            err = e.result()
            assert "INVALID_ARG" in str(err.status()) and field in err.message(), err.message()


# ---- Milvus (a real milvus-lite server process) --------------------------------------------------------------


@pytest.fixture(scope="module")
def milvus_uri(tmp_path_factory):
    """A Milvus Lite server process (Milvus's C++ engine) listening on a free loopback port."""
    from milvus_lite.server import Server
    from pymilvus import MilvusClient

    port = free_port()
    server = Server(str(tmp_path_factory.mktemp("milvus-data") / "catalog.db"), address=f"127.0.0.1:{port}")
    assert server.init() and server.start(), "milvus-lite did not start"
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            MilvusClient(uri=uri, timeout=2).list_collections()
            break
        except Exception:
            if time.monotonic() > deadline:
                server.stop()
                raise
            time.sleep(0.5)
    yield uri
    server.stop()


@pytest.fixture(scope="module")
def milvus_folder(milvus_uri, items, vectors, embedder, tmp_path_factory):
    folder = tmp_path_factory.mktemp("milvus") / C.CATALOG_DIR
    write_catalog(
        folder,
        items,
        vectors,
        IndexSettings(
            backend=C.BACKEND_MILVUS, kind=C.INDEX_FLAT, milvus_uri=milvus_uri, milvus_collection="test_catalog"
        ),
        embedder.key,
    )
    return folder


def test_milvus_returns_the_items_of_faiss_exact_search(milvus_folder, flat_folder, embedder):
    queries = embedder.encode(
        [
            "love songs",
            "metallica",
            "rock and roll",
            "the beatles",
            "new orleans jazz",
            "king of the hill",
            "moon river",
            "red hot",
        ]
    )
    milvus, faiss_exact = MilvusCatalog(milvus_folder), FaissCatalog(flat_folder)
    assert milvus.size == faiss_exact.size
    for got, want in zip(milvus.search(queries, 10), faiss_exact.search(queries, 10)):
        assert got.ids == want.ids and got.titles == want.titles and got.fields == want.fields
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-4)


def test_served_catalog_search_over_milvus(milvus_folder, flat_folder, milvus_uri, catalog_file, embedder, tmp_path):
    from search_build.repository.writer import write_repository
    from search_tools.server import TritonServer

    pipeline = build_pipeline(
        C.CATALOG_SEARCH,
        catalog=catalog_file,
        catalog_backend=C.BACKEND_MILVUS,
        index_kind=C.INDEX_FLAT,
        milvus_uri=milvus_uri,
        milvus_collection="served_catalog",
    )
    repo = write_repository([pipeline], tmp_path / "repo", "local", progress=lambda _: None)
    assert (
        json.loads((repo / C.CATALOG_SEARCH / "1" / C.CATALOG_DIR / C.MANIFEST_FILE).read_text())["milvus"][
            "collection"
        ]
        == "served_catalog"
    )
    queries = embedder.encode(["love songs", "moon river", "the beatles"])
    with TritonServer(repo, log_path=tmp_path / "tritonserver.log") as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        result = client.infer(C.CATALOG_SEARCH, [_floats(C.EMBEDDING, queries), _ints(C.TOP_K, np.full((3, 1), 10))])
    want = FaissCatalog(flat_folder).search(queries, 10)
    assert _decoded(result.as_numpy(C.ITEM_IDS)) == [h.ids for h in want]


# ---- command line -------------------------------------------------------------------------------------------


def test_index_build_adds_catalog_search_to_a_repository(catalog_file, tmp_path):
    from search_build.repository.writer import MANIFEST_FILE, write_repository
    from search_tools.cli import main

    repo = write_repository([build_pipeline(C.EMBEDDING_ENTRY)], tmp_path / "repo", "local", progress=lambda _: None)
    small = tmp_path / "small.jsonl"
    small.write_text(
        "\n".join(
            json.dumps({"id": f"s{i}", "title": t, "genre": g})
            for i, (t, g) in enumerate([("Enter Sandman", "metal"), ("Love Story", "pop"), ("So What", "jazz")])
        )
        + "\n",
        encoding="utf-8",
    )
    assert main(["index", "build", "--catalog", str(small), "--repository", str(repo)]) == 0
    manifest = json.loads((repo / MANIFEST_FILE).read_text())
    assert set(manifest["pipelines"]) == {C.EMBEDDING_ENTRY, C.CATALOG_SEARCH}
    assert (repo / C.EMBEDDING_ENTRY / "config.pbtxt").exists()
    catalog = open_catalog(repo / C.CATALOG_SEARCH / "1" / C.CATALOG_DIR)
    assert catalog.size == 3
    emb = CatalogEmbedder(build_pipeline(C.EMBEDDING_ENTRY))
    try:
        hit = catalog.search(emb.encode(["enter sandman"]), 1)[0]
    finally:
        emb.close()
    assert hit.ids == ["s0"] and json.loads(hit.fields[0]) == {"genre": "metal"}
