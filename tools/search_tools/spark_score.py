"""Duplicate scoring at catalog scale on Spark: ``predict_batch_udf`` over Parquet, the pair id carried through.

    searchbar score-spark pairs.parquet scores.parquet --onnx-dir DIR            # in-process engine
    searchbar score-spark pairs.parquet scores.parquet --triton-url host:8001    # a Triton server
    spark-submit tools/search_tools/spark_score.py s3://.../pairs/ s3://.../scores/ --master yarn --triton-url ...

Input: Parquet with ``id`` and the six product fields (a_type, a_title, a_description, b_type, b_title,
b_description; a missing column or a null means the field is absent). Output: Parquet with ``id`` and ``score`` =
P(duplicate), one row per input row. Each Python worker builds its scorer once (``predict_batch_udf``'s
``make_predict_fn``): a gRPC client of the Triton server the user points at (the ``product_duplicate`` ensemble,
requests of at most ``--rows-per-request`` rows), or the project's in-process ONNX Runtime chain. The same file runs
in local mode here (``--master local[2]``) and unchanged under spark-submit on EMR, Dataproc, Databricks or a
SageMaker Processing job (``searchbar submit-spark-sagemaker``): there the package must be installed in the
executors' Python (bootstrap action, cluster library, or the processing image).

Scoring is a pure function of each row, so a failed Spark task simply runs again and the output is written by
Spark's commit protocol: whole, or not at all.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from typing import Callable, Sequence

import numpy as np

# Absolute: spark-submit runs this file as a script (the package is installed where it runs).
from search_backends.contracts.product_search import SCORE, DUPLICATE
from search_tools.batch_scoring.journal import SCORE_COLUMN
from search_tools.batch_scoring.readers import FIELDS, ID_COLUMN
from search_tools.batch_scoring.scorers import triton_pair_inputs

SPARK_CONF_ENV = "SEARCHBAR_SPARK_CONF"  # extra Spark settings as JSON (set by the SageMaker Processing submission)


def _text(value) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return str(value)


def _six_inputs(score: Callable[[list], np.ndarray]) -> Callable[..., np.ndarray]:
    """predict_batch_udf counts the parameters of the function's signature: one per input column (FIELDS)."""

    def predict(*columns):
        return score(list(columns))

    predict.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(f, inspect.Parameter.POSITIONAL_OR_KEYWORD) for f in FIELDS]
    )
    return predict


def make_predict_fn(backend: dict) -> Callable[[], Callable[..., np.ndarray]]:
    """``predict_batch_udf``'s factory: runs once per Python worker, returns ``predict(*six columns) -> scores``."""
    kind = backend["kind"]

    def make():
        if kind == "onnx":
            from search_backends.product_onnx import ProductOnnxModels

            models = ProductOnnxModels(backend["onnx_dir"], intra_op_threads=int(backend.get("threads", 1)))

            def score(columns):
                return models.score_pairs(*[[_text(v) for v in column] for column in columns]).astype(np.float32)

            return _six_inputs(score)
        if kind == "triton":
            import tritonclient.grpc as grpcclient

            client = grpcclient.InferenceServerClient(backend["url"])
            step = int(backend.get("rows_per_request", 32))

            def score(columns):
                rows = len(columns[0])
                out = np.zeros(rows, dtype=np.float32)
                for start in range(0, rows, step):
                    inputs = triton_pair_inputs(
                        grpcclient, [[_text(v) for v in c[start : start + step]] for c in columns]
                    )
                    result = client.infer(
                        backend.get("model", DUPLICATE), inputs, client_timeout=float(backend.get("timeout_s", 120))
                    )
                    out[start : start + step] = result.as_numpy(SCORE).reshape(-1)
                return out

            return _six_inputs(score)
        raise ValueError(f"unknown scoring backend {kind!r} (onnx or triton)")

    return make


def spark_session(master: str | None = None, app: str = "searchbar-duplicate-scoring", conf: dict | None = None):
    import os

    from pyspark.sql import SparkSession

    if master and master.startswith("local"):  # workers must run this interpreter (its packages), not "python3"
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app)
    if master:
        builder = builder.master(master)
    for key, value in {
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.python.worker.reuse": "true",  # one scorer per worker, kept across tasks
        "spark.ui.enabled": "false",
        **(conf or {}),
    }.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def score_dataframe(df, backend: dict, batch_size: int = 256):
    """``df`` with ``id`` and the six fields -> ``id``, ``score`` (lazy; nothing runs until written)."""
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql import functions as F
    from pyspark.sql.types import FloatType

    if ID_COLUMN not in df.columns:
        raise ValueError(f"input needs an '{ID_COLUMN}' column (the pair id carried to the output)")
    if not set(FIELDS) & set(df.columns):
        raise ValueError(f"input has none of the product fields {', '.join(FIELDS)}")
    columns = [F.col(f).cast("string") if f in df.columns else F.lit(None).cast("string") for f in FIELDS]
    score = predict_batch_udf(make_predict_fn(backend), return_type=FloatType(), batch_size=batch_size)
    return df.select(F.col(ID_COLUMN), score(*columns).alias(SCORE_COLUMN))


def score_parquet(
    input_path: str,
    output_path: str,
    backend: dict,
    *,
    master: str | None = "local[2]",
    batch_size: int = 256,
    partitions: int | None = None,
    conf: dict | None = None,
) -> dict:
    spark = spark_session(master, conf=conf)
    started = time.monotonic()
    df = spark.read.parquet(input_path)
    if partitions:
        df = df.repartition(partitions)
    scored = score_dataframe(df, backend, batch_size=batch_size)
    scored.write.mode("overwrite").parquet(output_path)
    seconds = time.monotonic() - started
    rows = spark.read.parquet(output_path).count()
    return {
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_second": round(rows / seconds, 1) if seconds else 0.0,
        "output": output_path,
        "master": spark.sparkContext.master,
        "parallelism": spark.sparkContext.defaultParallelism,
    }


def backend_from_args(args) -> dict:
    if args.triton_url:
        return {
            "kind": "triton",
            "url": args.triton_url,
            "model": args.model,
            "rows_per_request": args.rows_per_request,
        }
    return {"kind": "onnx", "onnx_dir": str(args.onnx_dir), "threads": args.threads}


def add_arguments(parser) -> None:
    parser.add_argument("input", help="Parquet file or folder (local path, s3://, gs://, hdfs://, dbfs:/)")
    parser.add_argument("output", help="Parquet folder to write (replaced)")
    backend = parser.add_mutually_exclusive_group(required=True)
    backend.add_argument("--triton-url", help="gRPC address of a server serving product_duplicate")
    backend.add_argument("--onnx-dir", help="in-process engine: the product_export folder, on every executor")
    parser.add_argument("--model", default=DUPLICATE)
    parser.add_argument(
        "--master",
        default=None,
        help="Spark master (default: local[2] when run with python, the cluster's under spark-submit)",
    )
    parser.add_argument("--batch-size", type=int, default=256, help="rows per predict_batch_udf call")
    parser.add_argument("--rows-per-request", type=int, default=32, help="rows per Triton request")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per Python worker")
    parser.add_argument("--partitions", type=int, default=None, help="repartition the input first")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


def run(args) -> int:
    import os

    # spark-submit exports SPARK_ENV_LOADED: the cluster's master applies there; plain python runs local[2].
    master = args.master or (None if os.environ.get("SPARK_ENV_LOADED") else "local[2]")
    report = score_parquet(
        args.input,
        args.output,
        backend_from_args(args),
        master=master,
        batch_size=args.batch_size,
        partitions=args.partitions,
        conf=json.loads(os.environ.get(SPARK_CONF_ENV) or "{}"),
    )
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
