"""catalog_search and search_bar: the catalog builder, FAISS and Milvus search, and the served pipelines.

Served results are compared with an in-process search of the very index folder the server loaded, stage outputs
with the stage models called on their own, and catalog vectors with the served query_embedding.
"""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from search_backends.contracts import search_bar as C
from search_backends.catalog_index import Hits, padded, top_k_of_request
from search_backends.search_bar import SearchBarRequest, Stages, parse_request, run_search_bar
from search_backends.text_input import InputError
from search_build.catalog.indexing import IndexSettings
from search_build.catalog.items import CatalogError, read_catalog


def test_catalog_formats_read_alike(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {"id": "a1", "title": "Enter Sandman", "artist": "Metallica"},
        {"id": "b2", "title": "Love Story", "year": 2008},
    ]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    pq.write_table(
        pa.table(
            {
                "id": ["a1", "b2"],
                "title": ["Enter Sandman", "Love Story"],
                "artist": ["Metallica", None],
                "year": [None, 2008],
            }
        ),
        tmp_path / "c.parquet",
    )
    (tmp_path / "c.csv").write_text("id,title,artist\na1,Enter Sandman,Metallica\n", encoding="utf-8")
    jsonl, parquet, csv = (read_catalog(tmp_path / f"c.{s}") for s in ("jsonl", "parquet", "csv"))
    assert jsonl.ids == parquet.ids == ["a1", "b2"] and jsonl.titles == parquet.titles
    assert json.loads(jsonl.fields[0]) == {"artist": "Metallica"} and json.loads(jsonl.fields[1]) == {"year": 2008}
    assert parquet.fields == jsonl.fields  # a null is a missing field
    assert csv.ids == ["a1"] and json.loads(csv.fields[0]) == {"artist": "Metallica"}
    assert jsonl.sha256 != parquet.sha256


@pytest.mark.parametrize(
    "content, message",
    [
        ("id,name\n1,x\n", "needs both 'id' and 'title'"),
        ("id,title\n1,x\n1,y\n", "duplicate id '1'"),
        ("id,title\n1,\n", "'title' must be"),
        ("id,title\n", "no items"),
    ],
)
def test_bad_catalogs_are_refused_with_the_row(tmp_path, content, message):
    path = tmp_path / "c.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CatalogError, match=message):
        read_catalog(path)


def test_unknown_catalog_format_is_refused(tmp_path):
    (tmp_path / "c.xlsx").write_bytes(b"x")
    with pytest.raises(CatalogError, match="csv, .jsonl or .parquet"):
        read_catalog(tmp_path / "c.xlsx")


# ---- embedding and indexes ----------------------------------------------------------------------------------


def test_auto_index_kind_follows_the_documented_size():
    settings = IndexSettings()
    assert settings.resolved_kind(C.EXACT_MAX_ITEMS) == C.INDEX_FLAT
    assert settings.resolved_kind(C.EXACT_MAX_ITEMS + 1) == C.INDEX_HNSW
    with pytest.raises(ValueError, match="index kind"):
        IndexSettings(kind="ivf").resolved_kind(10)


def test_top_k_rules():
    assert top_k_of_request(None) == C.DEFAULT_TOP_K
    assert top_k_of_request(np.array([[4], [4]], np.int32)) == 4
    for bad, message in (
        (np.array([[0]], np.int32), "between 1 and"),
        (np.array([[C.MAX_TOP_K + 1]], np.int32), "between"),
        (np.array([[3], [4]], np.int32), "same number"),
        (np.array([[1.5]]), "integers"),
    ):
        with pytest.raises(ValueError, match=message):
            top_k_of_request(bad)


def test_padding_marks_missing_results():
    out = padded(
        [
            Hits(["a", "b"], ["A", "B"], ["{}", "{}"], np.array([0.9, 0.8], np.float32)),
            Hits(["c"], ["C"], ["{}"], np.array([0.7], np.float32)),
        ]
    )
    assert out[C.ITEM_IDS].tolist() == [["a", "b"], ["c", C.MISSING_ID]]
    assert out[C.SCORES][1, 1] == C.MISSING_SCORE


# ---- search_bar logic (fake stages) -------------------------------------------------------------------------


def _fake_stages(log: list, fail_on: str | None = None) -> Stages:
    async def spell(texts):
        log.append(("spell", list(texts)))
        if fail_on in texts:
            raise RuntimeError("stage failed")
        return [t.replace("metalica", "metallica") for t in texts]

    async def intent(texts):
        log.append(("intent", list(texts)))
        return ["media"] * len(texts), np.tile(np.array([[0.7, 0.3]], np.float32), (len(texts), 1))

    async def embed(texts):
        log.append(("embed", list(texts)))
        return np.ones((len(texts), 4), np.float32)

    async def search(vectors, k):
        log.append(("search", len(vectors), k))
        return padded(
            [
                Hits(
                    [f"i{j}" for j in range(k)],
                    [f"T{j}" for j in range(k)],
                    ["{}"] * k,
                    np.linspace(1, 0, k).astype(np.float32),
                )
                for _ in range(len(vectors))
            ]
        )

    return Stages(spell, intent, embed, search, intent_classes=2)


def test_search_bar_batches_each_stage_once_and_respects_switches():
    log: list = []
    requests = [
        SearchBarRequest(["metalica one", "metalica two"], top_k=3),
        SearchBarRequest(["metalica"], top_k=5, correct_spelling=False, detect_intent=False),
    ]
    first, second = asyncio.run(run_search_bar(requests, _fake_stages(log)))
    assert [entry[0] for entry in log] == ["spell", "intent", "embed", "search"]
    assert log[0] == ("spell", ["metalica one", "metalica two"])  # the switched-off request is not corrected
    assert log[1] == ("intent", ["metallica one", "metallica two"])  # intent reads the corrected text
    assert log[2] == ("embed", ["metallica one", "metallica two", "metalica"])
    assert log[3] == ("search", 3, 5)  # one search at the largest k
    assert first[C.CORRECTED].reshape(-1).tolist() == ["metallica one", "metallica two"]
    assert first[C.ITEM_IDS].shape == (2, 3) and second[C.ITEM_IDS].shape == (1, 5)
    assert second[C.CORRECTED].reshape(-1).tolist() == ["metalica"]
    assert second[C.INTENT].reshape(-1).tolist() == [""] and not second[C.INTENT_PROBABILITIES].any()
    np.testing.assert_allclose(first[C.INTENT_PROBABILITIES], [[0.7, 0.3]] * 2)


def test_search_bar_isolates_a_failing_request():
    log: list = []
    outcomes = asyncio.run(
        run_search_bar(
            [SearchBarRequest(["good"]), SearchBarRequest(["poison"]), SearchBarRequest(["fine"])],
            _fake_stages(log, fail_on="poison"),
        )
    )
    assert isinstance(outcomes[1], RuntimeError)
    assert outcomes[0][C.CORRECTED].reshape(-1).tolist() == ["good"] and outcomes[2][C.ITEM_IDS].shape == (1, 10)


def test_search_bar_request_validation():
    ok = parse_request(
        np.array([[b"tayler swift"]], dtype=object), np.array([[4]], np.int32), np.array([[False]]), None
    )
    assert ok == SearchBarRequest(["tayler swift"], 4, False, True)
    for args, field in (
        ((None,), "TEXT"),
        ((np.array([[b""]], dtype=object),), "TEXT"),
        ((np.array([[b"a"]], dtype=object), np.array([[0]], np.int32)), "TOP_K"),
        ((np.array([[b"a"], [b"b"]], dtype=object), None, np.array([[True], [False]])), "CORRECT_SPELLING"),
        ((np.array([[b"a"]], dtype=object), None, None, np.array([[1]], np.int32)), "DETECT_INTENT"),
    ):
        with pytest.raises(InputError, match=field):
            parse_request(*args)


# ---- served -------------------------------------------------------------------------------------------------
