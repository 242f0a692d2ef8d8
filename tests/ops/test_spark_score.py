"""The Spark scoring job on real Spark (local[2]) against the single-machine job and in-process scoring,
and its SageMaker Processing submission against moto."""

from __future__ import annotations

import csv
import random

import numpy as np
import pytest

pyspark = pytest.importorskip("pyspark", reason="pyspark is a project dependency: bash scripts/setup.sh")

from search_tools import spark_score  # noqa: E402
from search_tools.batch_scoring.readers import FIELDS  # noqa: E402
from search_tools.batch_scoring.runner import score_file  # noqa: E402
from search_tools.batch_scoring.scorers import OnnxScorer  # noqa: E402

PAIRS = 240


def _records(n: int = PAIRS, seed: int = 5) -> list[dict]:
    rng = random.Random(seed)
    brands, kinds = ["sony", "bose", "apple", "jbl", "dell"], ["headphones", "speaker", "laptop", "charger"]
    out = []
    for i in range(n):
        kind = rng.choice(kinds)
        out.append(
            {
                "id": f"pair-{i:04d}",
                "a_type": kind,
                "a_title": f"{rng.choice(brands)} {kind} {rng.randrange(50)}",
                "a_description": None if i % 4 else "black, wireless",
                "b_type": kind if i % 5 else None,
                "b_title": f"{rng.choice(brands)} {kind} {rng.randrange(50)}",
                "b_description": None,
            }
        )
    return out


@pytest.fixture(scope="module")
def onnx_dir():
    from search_build.pipelines.product_search import DEFAULT_CHECKPOINT, exported_models

    return exported_models(DEFAULT_CHECKPOINT)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path_factory.mktemp("pairs") / "pairs.parquet"
    records = _records()
    pq.write_table(pa.table({k: [r[k] for r in records] for k in records[0]}), path, row_group_size=50)
    return path, records


@pytest.fixture(scope="module")
def in_process(pairs, onnx_dir):
    from search_backends.product_onnx import ProductOnnxModels

    _, records = pairs
    scores = ProductOnnxModels(onnx_dir).score_pairs(*[[r[f] for r in records] for f in FIELDS])
    return {r["id"]: float(s) for r, s in zip(records, scores)}


def _read_scores(folder) -> dict[str, float]:
    import pyarrow.parquet as pq

    table = pq.read_table(folder)
    return dict(zip(table.column("id").to_pylist(), table.column("score").to_pylist()))


def test_spark_job_equals_single_machine_job_and_in_process_scoring(pairs, onnx_dir, in_process, tmp_path):
    path, records = pairs
    report = spark_score.score_parquet(
        str(path),
        str(tmp_path / "spark_scores"),
        {"kind": "onnx", "onnx_dir": str(onnx_dir)},
        master="local[2]",
        batch_size=64,
        partitions=4,
    )
    assert report["rows"] == PAIRS and report["parallelism"] == 2
    spark = _read_scores(tmp_path / "spark_scores")
    assert sorted(spark) == sorted(r["id"] for r in records), "every pair exactly once, id carried through"

    single = tmp_path / "single.csv"
    score_file(path, single, OnnxScorer(onnx_dir), rows_per_request=32, in_flight=2, progress=False)
    with open(single, newline="", encoding="utf-8") as f:
        single_scores = {r["id"]: float(r["score"]) for r in csv.DictReader(f)}
    ids = [r["id"] for r in records]
    np.testing.assert_allclose([spark[i] for i in ids], [in_process[i] for i in ids], atol=1e-5)
    np.testing.assert_allclose([spark[i] for i in ids], [single_scores[i] for i in ids], atol=1e-5)


def test_spark_job_through_the_served_pipeline(pairs, onnx_dir, in_process, triton, tmp_path):
    from support.serving import SERVED_PIPELINES

    if "product_duplicate" not in SERVED_PIPELINES:
        pytest.skip("product_duplicate not served")
    path, records = pairs
    code = spark_score.main(
        [
            str(path),
            str(tmp_path / "served_scores"),
            "--triton-url",
            triton.grpc_url,
            "--master",
            "local[2]",
            "--batch-size",
            "100",
            "--rows-per-request",
            "32",
        ]
    )
    assert code == 0
    served = _read_scores(tmp_path / "served_scores")
    ids = [r["id"] for r in records]
    # The same engine and precision in process as the server runs (bf16 where the build chose it: OpenVINO's bf16
    # scores do not depend on how rows are batched, so the two agree to float rounding).
    import tritonclient.grpc as grpcclient
    from search_backends.product_onnx import ProductOnnxModels
    from support.serving import served_precision

    precision = served_precision(grpcclient.InferenceServerClient(triton.grpc_url), "product_encoder")
    if precision != "fp32":
        scores = ProductOnnxModels(onnx_dir, engine="openvino", precision=precision).score_pairs(
            *[[r[f] for r in records] for f in FIELDS]
        )
        in_process = {r["id"]: float(s) for r, s in zip(records, scores)}
    np.testing.assert_allclose([served[i] for i in ids], [in_process[i] for i in ids], atol=1e-5)


def test_spark_job_refuses_input_without_ids(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a_title": ["x"], "b_title": ["y"]}), tmp_path / "noid.parquet")
    with pytest.raises(ValueError, match="'id' column"):
        spark_score.score_parquet(
            str(tmp_path / "noid.parquet"),
            str(tmp_path / "out"),
            {"kind": "onnx", "onnx_dir": "unused"},
            master="local[2]",
        )


def test_sagemaker_processing_submission(tmp_path):
    moto = pytest.importorskip("moto")
    import boto3

    from search_tools.sagemaker_processing import ProcessingPlan, processing_job_request, submit

    plan = ProcessingPlan(
        "dup-scoring-1",
        "arn:aws:iam::123456789012:role/sm",
        "123.dkr.ecr.us-east-1.amazonaws.com/spark:1",
        "s3://bucket/pairs/",
        "s3://bucket/scores/",
        "s3://bucket/code/",
        onnx_model_s3="s3://bucket/model/",
        instance_count=3,
    )
    with moto.mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="bucket")
        sm = boto3.client("sagemaker", region_name="us-east-1")
        arn = submit(plan, sm, s3)["ProcessingJobArn"]
        job = sm.describe_processing_job(ProcessingJobName="dup-scoring-1")
        body = s3.get_object(Bucket="bucket", Key="code/spark_score.py")["Body"].read().decode()
    assert arn.endswith("processing-job/dup-scoring-1")
    assert "predict_batch_udf" in body
    app = job["AppSpecification"]
    assert app["ContainerEntrypoint"] == ["smspark-submit", "/opt/ml/processing/input/code/spark_score.py"]
    assert app["ContainerArguments"][:2] == [
        "file:///opt/ml/processing/input/pairs",
        "file:///opt/ml/processing/output/scores",
    ]
    assert "--onnx-dir" in app["ContainerArguments"]
    request = processing_job_request(plan)
    # The request is valid for the real service model (what botocore would send to AWS).
    from botocore.validate import ParamValidator

    operation = boto3.client("sagemaker", region_name="us-east-1").meta.service_model.operation_model(
        "CreateProcessingJob"
    )
    report = ParamValidator().validate(request, operation.input_shape)
    assert not report.has_errors(), report.generate_report()
    assert request["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 3
    inputs = {i["InputName"]: i["S3Input"] for i in job["ProcessingInputs"]}
    assert inputs["pairs"]["S3DataDistributionType"] == "ShardedByS3Key"
    assert inputs["model"]["S3DataDistributionType"] == "FullyReplicated"
    with pytest.raises(ValueError, match="exactly one scorer"):
        ProcessingPlan("j", "r", "i", "s3://b/p", "s3://b/o", "s3://b/c")
    with pytest.raises(ValueError, match="s3://"):
        ProcessingPlan("j", "r", "i", "/local/pairs", "s3://b/o", "s3://b/c", triton_url="h:8001")
