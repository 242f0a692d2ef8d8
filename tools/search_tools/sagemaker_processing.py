"""`searchbar submit-spark-sagemaker`: run the Spark duplicate-scoring job as a SageMaker Processing job.

What SageMaker's ``PySparkProcessor`` does, with boto3 only: upload ``spark_score.py`` to S3, then
CreateProcessingJob on a Spark processing image whose entrypoint ``smspark-submit`` starts a Spark cluster over
the job's instances and submits the script. The pairs come in through a sharded S3 input, the scores go out
through an S3 output; ``--onnx-model-s3`` (the product_export folder) is copied to every instance for the
in-process engine, or ``--triton-url`` points the executors at a Triton server (a SageMaker endpoint's
instances, or a fleet). The image must hold this package and its serving dependencies: build one FROM
SageMaker's Spark processing image with ``pip install searchbar-triton`` (``--image-uri``). Clients are passed
in, so the same code runs against AWS, moto or a botocore Stubber.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .spark_score import SPARK_CONF_ENV

SCRIPT = Path(__file__).with_name("spark_score.py")
CONTAINER_INPUT, CONTAINER_OUTPUT = "/opt/ml/processing/input/pairs", "/opt/ml/processing/output/scores"
CONTAINER_CODE, CONTAINER_MODEL = "/opt/ml/processing/input/code", "/opt/ml/processing/input/model"


@dataclass(frozen=True)
class ProcessingPlan:
    job_name: str
    role_arn: str
    image_uri: str
    input_s3: str  # s3://bucket/prefix/ of Parquet pairs
    output_s3: str  # s3://bucket/prefix/ for the scores
    code_s3: str  # s3://bucket/prefix/ where spark_score.py is uploaded
    instance_type: str = "ml.m5.4xlarge"
    instance_count: int = 2
    volume_gb: int = 50
    triton_url: str | None = None
    onnx_model_s3: str | None = None
    batch_size: int = 256
    max_runtime_s: int = 24 * 3600
    spark_conf: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.triton_url is None) == (self.onnx_model_s3 is None):
            raise ValueError("give exactly one scorer: --triton-url or --onnx-model-s3")
        for name in ("input_s3", "output_s3", "code_s3") + (("onnx_model_s3",) if self.onnx_model_s3 else ()):
            if not getattr(self, name).startswith("s3://"):
                raise ValueError(f"{name} must be an s3:// URI, got {getattr(self, name)!r}")
        if self.instance_count < 1:
            raise ValueError("instance_count must be >= 1")


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def job_arguments(plan: ProcessingPlan) -> list[str]:
    scorer = ["--triton-url", plan.triton_url] if plan.triton_url else ["--onnx-dir", CONTAINER_MODEL]
    return [f"file://{CONTAINER_INPUT}", f"file://{CONTAINER_OUTPUT}", *scorer, "--batch-size", str(plan.batch_size)]


def processing_job_request(plan: ProcessingPlan) -> dict:
    """The CreateProcessingJob request (shapes as in the SageMaker API reference)."""
    inputs = [
        {
            "InputName": "code",
            "S3Input": {
                "S3Uri": plan.code_s3.rstrip("/") + "/" + SCRIPT.name,
                "LocalPath": CONTAINER_CODE,
                "S3DataType": "S3Prefix",
                "S3InputMode": "File",
                "S3DataDistributionType": "FullyReplicated",
            },
        },
        # Each instance gets its share of the pair files; Spark spreads them over its executors.
        {
            "InputName": "pairs",
            "S3Input": {
                "S3Uri": plan.input_s3,
                "LocalPath": CONTAINER_INPUT,
                "S3DataType": "S3Prefix",
                "S3InputMode": "File",
                "S3DataDistributionType": "ShardedByS3Key",
            },
        },
    ]
    if plan.onnx_model_s3:
        inputs.append(
            {
                "InputName": "model",
                "S3Input": {
                    "S3Uri": plan.onnx_model_s3,
                    "LocalPath": CONTAINER_MODEL,
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                    "S3DataDistributionType": "FullyReplicated",
                },
            }
        )
    return {
        "ProcessingJobName": plan.job_name,
        "RoleArn": plan.role_arn,
        "AppSpecification": {
            "ImageUri": plan.image_uri,
            "ContainerEntrypoint": ["smspark-submit", f"{CONTAINER_CODE}/{SCRIPT.name}"],
            "ContainerArguments": job_arguments(plan),
        },
        "ProcessingInputs": inputs,
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "scores",
                    "S3Output": {"S3Uri": plan.output_s3, "LocalPath": CONTAINER_OUTPUT, "S3UploadMode": "EndOfJob"},
                }
            ]
        },
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": plan.instance_count,
                "InstanceType": plan.instance_type,
                "VolumeSizeInGB": plan.volume_gb,
            }
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": plan.max_runtime_s},
        "Environment": {SPARK_CONF_ENV: json.dumps(plan.spark_conf)},
    }


def submit(plan: ProcessingPlan, sagemaker, s3) -> dict:
    """Upload the script, create the job; returns CreateProcessingJob's answer."""
    bucket, key = _split(plan.code_s3.rstrip("/") + "/" + SCRIPT.name)
    s3.upload_file(str(SCRIPT), bucket, key)
    return sagemaker.create_processing_job(**processing_job_request(plan))


def add_arguments(parser) -> None:
    parser.add_argument("--job-name", required=True)
    parser.add_argument("--role-arn", required=True)
    parser.add_argument(
        "--image-uri",
        required=True,
        help="a Spark processing image with this package installed (FROM SageMaker's Spark image)",
    )
    parser.add_argument("--input-s3", required=True)
    parser.add_argument("--output-s3", required=True)
    parser.add_argument("--code-s3", required=True)
    scorer = parser.add_mutually_exclusive_group(required=True)
    scorer.add_argument("--triton-url")
    scorer.add_argument("--onnx-model-s3")
    parser.add_argument("--instance-type", default="ml.m5.4xlarge")
    parser.add_argument("--instance-count", type=int, default=2)
    parser.add_argument("--region", default=None)


def run(args) -> int:
    import boto3

    plan = ProcessingPlan(
        args.job_name,
        args.role_arn,
        args.image_uri,
        args.input_s3,
        args.output_s3,
        args.code_s3,
        instance_type=args.instance_type,
        instance_count=args.instance_count,
        triton_url=args.triton_url,
        onnx_model_s3=args.onnx_model_s3,
    )
    answer = submit(
        plan, boto3.client("sagemaker", region_name=args.region), boto3.client("s3", region_name=args.region)
    )
    print(json.dumps({"ProcessingJobArn": answer["ProcessingJobArn"]}))
    return 0
