"""The batch scoring job SIGKILLed at random points, many times, then resumed: no row lost, doubled or changed.

The job runs as its own process (``searchbar score``) with the in-process ONNX engine, so
every kill lands in real work: reading, scoring, writing, fsync, journaling. Kill times are seeded.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from search_tools.batch_scoring.readers import FIELDS

KILLS = 20
ROWS = 480
SEED = 17


def _pairs(path: Path) -> None:
    rng = random.Random(SEED)
    brands = ["sony", "bose", "apple", "lenovo", "dell", "jbl", "anker", "logitech"]
    kinds = ["headphones", "speaker", "laptop", "mouse", "charger", "phone case"]
    with open(path, "w", encoding="utf-8") as f:
        for i in range(ROWS):
            a_brand, b_brand = rng.choice(brands), rng.choice(brands)
            kind = rng.choice(kinds)
            row = {
                "id": f"pair-{i:04d}",
                "a_type": kind,
                "a_title": f"{a_brand} {kind} model {rng.randrange(100)}",
                "a_description": None,
                "b_type": kind,
                "b_title": f"{b_brand} {kind} model {rng.randrange(100)}",
                "b_description": "wireless" if i % 3 else None,
            }
            f.write(json.dumps(row) + "\n")
    assert set(FIELDS) <= set(row)


def _job(src: Path, out: Path, onnx_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "search_tools.cli",
        "score",
        str(src),
        str(out),
        "--onnx-dir",
        str(onnx_dir),
        "--rows-per-request",
        "8",
        "--in-flight",
        "2",
        "--commit-rows",
        "24",
        "--no-progress",
    ]


def _read(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def onnx_dir():
    from search_build.pipelines.product_search import DEFAULT_CHECKPOINT, exported_models

    return exported_models(DEFAULT_CHECKPOINT)


def test_sigkill_many_times_then_resume_equals_an_uninterrupted_run(tmp_path, onnx_dir):
    src = tmp_path / "pairs.jsonl"
    _pairs(src)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = tmp_path / "reference.csv"
    started = time.monotonic()
    subprocess.run(_job(src, reference, onnx_dir), check=True, env=env, capture_output=True)
    full_run_s = time.monotonic() - started

    out = tmp_path / "scores.csv"
    rng = random.Random(SEED)
    journal = out.with_name(out.name + ".journal")
    kills, progress = 0, []
    while kills < KILLS:
        job = subprocess.Popen(_job(src, out, onnx_dir), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.2, full_run_s * 0.5))
        if job.poll() is not None:  # finished before the kill: start over so every kill lands mid-run
            assert job.returncode == 0, job.stderr.read().decode()[-2000:]
            out.unlink()
            journal.unlink()
            continue
        job.send_signal(signal.SIGKILL)
        job.wait()
        kills += 1
        progress.append(out.stat().st_size if out.exists() else 0)
    finished = subprocess.run(_job(src, out, onnx_dir), env=env, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-2000:]

    got, want = _read(out), _read(reference)
    assert [r["row"] for r in got] == [str(i) for i in range(ROWS)], "every row exactly once, in input order"
    assert [r["id"] for r in got] == [r["id"] for r in want]
    np.testing.assert_allclose([float(r["score"]) for r in got], [float(r["score"]) for r in want], atol=1e-6)
    assert kills == KILLS and len(set(progress)) > 3, "kills landed at many points of the run, not only at start-up"


def test_triton_identity_names_every_model_and_its_files(triton, model_repository):
    import asyncio

    from support.serving import SERVED_PIPELINES
    from search_build.repository.writer import folder_sha256
    from search_tools.batch_scoring.scorers import TritonScorer

    if "product_duplicate" not in SERVED_PIPELINES:
        pytest.skip("product_duplicate not served")

    async def identity():
        scorer = TritonScorer(triton.grpc_url)
        try:
            return await scorer.identity()
        finally:
            await scorer.close()

    got = asyncio.run(identity())
    assert set(got["models"]) == {
        "product_duplicate",
        "product_pair_tokenize",
        "product_encoder",
        "product_duplicate_head",
    }
    for name, model in got["models"].items():
        assert model["versions"] == ["1"]
        if name != "product_duplicate":  # the ensemble has no files of its own
            assert model["artifact_sha256"] == folder_sha256(model_repository / name / "1")
