"""query_embedding served by a real tritonserver matches sentence-transformers."""

from __future__ import annotations

import queue
from functools import partial

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from support.serving import BATCH_TOLERANCE, ELEMENT_TOLERANCE, served_precision, string_input
from search_build.export.sentence_checkpoint import default_embedding_checkpoint

ENCODER = "query_embedding_encoder"

BURSTS = 5
QUERIES = [
    "taylor swift",
    "Taylor Swift love story (Taylor's version)",
    "lofi hip hop radio beats to relax/study to",
    "beethoven symphony no. 9 in d minor, op. 125",
    "AC/DC - Highway to Hell",
    "música para dormir",
    "シティポップ 80年代",
    "k-pop 2024 hits 🔥🔥",
    "a",
    "?",
    "rock",
    "the the the the the",
    "songs like bohemian rhapsody but slower and with more piano",
    "    padded with spaces    ",
    "UPPERCASE QUERY WITH NUMBERS 1234567890",
    "naïve café déjà vu",
    "Привет мир песни",
    "emoji only 🎸🥁🎹",
    "new line\nin the middle",
    "tab\tseparated\tquery",
    "x" * 40,
    " ".join(["very long query about music"] * 80),  # beyond max_seq_length: truncated
    "hip-hop/rap; r&b <3",
    "what's that song that goes na na na",
]


@pytest.fixture(scope="module")
def reference():
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(default_embedding_checkpoint()), device="cpu")
    # The served pipeline truncates at 128 tokens (queries are short); compare like with like.
    model.max_seq_length = 128
    return model


def _embed(client, texts):
    return client.infer("query_embedding", [string_input(grpcclient, "TEXT", texts)]).as_numpy("EMBEDDING")


def test_matches_sentence_transformers(grpc_client, reference):
    want = reference.encode(QUERIES, normalize_embeddings=True, convert_to_numpy=True)
    got = np.concatenate([_embed(grpc_client, [q]) for q in QUERIES])
    assert got.shape == want.shape and got.dtype == np.float32
    cosine = np.sum(got * want, axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cosine.min() >= 0.9999, dict(zip(QUERIES, cosine.round(6)))
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert np.abs(got - want).max() < ELEMENT_TOLERANCE[served_precision(grpc_client, ENCODER)]


def test_multi_row_request_equals_single_rows(grpc_client):
    batch = _embed(grpc_client, QUERIES[:8])
    singles = np.concatenate([_embed(grpc_client, [q]) for q in QUERIES[:8]])
    assert np.abs(batch - singles).max() < BATCH_TOLERANCE[served_precision(grpc_client, ENCODER)]


def test_concurrent_requests_batch_to_the_same_vectors(grpc_client):
    """A burst of requests, all in flight at once (gRPC async, no client thread pool in the way), is answered with
    the single-request vectors, and the encoder's dynamic batcher merges some of them. The session server serves
    every pipeline on a shared machine, so one burst can be drained one by one; merging is checked over bursts."""
    singles = {q: _embed(grpc_client, [q])[0] for q in QUERIES}
    tolerance = BATCH_TOLERANCE[served_precision(grpc_client, ENCODER)]
    merged = []
    for _burst in range(BURSTS):
        before = _execution_count(grpc_client)
        done = queue.Queue()
        for k, q in enumerate(QUERIES * 2):
            grpc_client.async_infer(
                "query_embedding",
                [string_input(grpcclient, "TEXT", [q])],
                partial(lambda k, result, error: done.put((k, result, error)), k),
            )
        for _ in range(2 * len(QUERIES)):
            k, result, error = done.get(timeout=60)
            assert error is None, error
            q = QUERIES[k % len(QUERIES)]
            assert np.abs(result.as_numpy("EMBEDDING")[0] - singles[q]).max() < tolerance, q
        inferences, executions = (a - b for a, b in zip(_settled_count(grpc_client, before, 2 * len(QUERIES)), before))
        assert inferences == 2 * len(QUERIES)
        merged.append(inferences - executions)
        if executions < inferences:
            return
    pytest.fail(f"dynamic batching merged no concurrent requests in {BURSTS} bursts (rows merged per burst: {merged})")


def test_semantics_are_sensible(grpc_client):
    a, b, c = _embed(grpc_client, ["relaxing piano music", "calm piano songs", "heavy metal guitar solo"])
    assert a @ b > a @ c


def _settled_count(client, before, expected, timeout_s: float = 5.0):
    """The counts once the stub has reported them: a Python model's statistics land after its responses."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        counts = _execution_count(client)
        if counts[0] - before[0] >= expected or time.monotonic() > deadline:
            return counts
        time.sleep(0.05)


def _execution_count(client):
    stats = client.get_inference_statistics("query_embedding_encoder", as_json=True)["model_stats"][0]
    return int(stats["inference_count"]), int(stats["execution_count"])
