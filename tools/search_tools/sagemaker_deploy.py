"""`searchbar deploy-sagemaker`: upload model.tar.gz and stand up an autoscaled SageMaker Triton endpoint.

Calls, in order: S3 upload, CreateModel (Triton image + the package's container environment),
CreateEndpointConfig (one variant), CreateEndpoint, then Application Auto Scaling
RegisterScalableTarget + PutScalingPolicy (target tracking on SageMakerVariantInvocationsPerInstance).
Clients are passed in, so the same code runs against AWS, moto or a botocore Stubber.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from search_build.deploy.sagemaker_package import CONTAINER_INFO, DEFAULT_IMAGE_TAG, image_uri


@dataclass(frozen=True)
class EndpointPlan:
    name: str  # endpoint name; model and config names derive from it
    model_data_url: str  # s3://bucket/key/model.tar.gz
    image: str
    role_arn: str
    environment: dict[str, str]
    instance_type: str = "ml.g5.xlarge"
    initial_instance_count: int = 1
    variant: str = "AllTraffic"
    min_capacity: int = 1
    max_capacity: int = 4
    target_invocations_per_instance: float = 1000.0  # per minute, SageMaker's metric unit
    scale_in_cooldown_s: int = 300
    scale_out_cooldown_s: int = 60

    @property
    def model_name(self) -> str:
        return f"{self.name}-model"

    @property
    def config_name(self) -> str:
        return f"{self.name}-config"

    @property
    def resource_id(self) -> str:
        return f"endpoint/{self.name}/variant/{self.variant}"


def upload(s3, archive: str | Path, bucket: str, key: str) -> str:
    s3.upload_file(str(archive), bucket, key)
    return f"s3://{bucket}/{key}"


def deploy(sagemaker, autoscaling, plan: EndpointPlan) -> dict[str, str]:
    """Create model, endpoint config, endpoint and its scaling policy; returns their ARNs."""
    model = sagemaker.create_model(
        ModelName=plan.model_name,
        ExecutionRoleArn=plan.role_arn,
        PrimaryContainer={
            "Image": plan.image,
            "ModelDataUrl": plan.model_data_url,
            "Environment": dict(plan.environment),
        },
    )
    config = sagemaker.create_endpoint_config(
        EndpointConfigName=plan.config_name,
        ProductionVariants=[
            {
                "VariantName": plan.variant,
                "ModelName": plan.model_name,
                "InstanceType": plan.instance_type,
                "InitialInstanceCount": plan.initial_instance_count,
            }
        ],
    )
    endpoint = sagemaker.create_endpoint(EndpointName=plan.name, EndpointConfigName=plan.config_name)
    autoscaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=plan.resource_id,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        MinCapacity=plan.min_capacity,
        MaxCapacity=plan.max_capacity,
    )
    policy = autoscaling.put_scaling_policy(
        PolicyName=f"{plan.name}-invocations",
        ServiceNamespace="sagemaker",
        ResourceId=plan.resource_id,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": plan.target_invocations_per_instance,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
            "ScaleInCooldown": plan.scale_in_cooldown_s,
            "ScaleOutCooldown": plan.scale_out_cooldown_s,
        },
    )
    return {
        "model": model["ModelArn"],
        "endpoint_config": config["EndpointConfigArn"],
        "endpoint": endpoint["EndpointArn"],
        "scaling_policy": policy["PolicyARN"],
    }


def add_arguments(parser) -> None:
    parser.add_argument(
        "--archive",
        type=Path,
        default=Path("out/sagemaker/model.tar.gz"),
        help="from `searchbar package-sagemaker` (its sagemaker_container.json is read too)",
    )
    parser.add_argument("--name", required=True, help="endpoint name")
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--prefix", default="searchbar", help="S3 key prefix")
    parser.add_argument("--role-arn", required=True, help="SageMaker execution role")
    parser.add_argument("--region", default=None, help="AWS region (default: the boto3 session's)")
    parser.add_argument("--image", help="container image (default: sagemaker-tritonserver for the region)")
    parser.add_argument("--image-tag", default=DEFAULT_IMAGE_TAG)
    parser.add_argument(
        "--instance-type",
        default="ml.g5.xlarge",
        help="ml.g5.xlarge for triton-gpu repositories, e.g. ml.c6i.2xlarge for triton-cpu",
    )
    parser.add_argument("--instance-count", type=int, default=1)
    parser.add_argument("--min-capacity", type=int, default=1)
    parser.add_argument("--max-capacity", type=int, default=4)
    parser.add_argument(
        "--target-invocations",
        type=float,
        default=1000.0,
        help="target invocations per instance per minute for autoscaling",
    )
    parser.add_argument("--wait", action="store_true", help="wait until the endpoint is InService")


def run(args) -> int:
    import boto3

    session = boto3.Session(region_name=args.region)
    region = session.region_name or "us-east-1"
    info_path = args.archive.parent / CONTAINER_INFO
    if not info_path.exists():
        raise SystemExit(f"{info_path} not found: package with `searchbar package-sagemaker` first")
    environment = json.loads(info_path.read_text())["environment"]
    url = upload(session.client("s3"), args.archive, args.bucket, f"{args.prefix.strip('/')}/{args.name}/model.tar.gz")
    plan = EndpointPlan(
        name=args.name,
        model_data_url=url,
        image=args.image or image_uri(region, args.image_tag),
        role_arn=args.role_arn,
        environment=environment,
        instance_type=args.instance_type,
        initial_instance_count=args.instance_count,
        min_capacity=args.min_capacity,
        max_capacity=args.max_capacity,
        target_invocations_per_instance=args.target_invocations,
    )
    sagemaker = session.client("sagemaker")
    arns = deploy(sagemaker, session.client("application-autoscaling"), plan)
    for what, arn in arns.items():
        print(f"{what}: {arn}")
    if args.wait:
        print("waiting for InService ...", flush=True)
        sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=plan.name)
    print(
        f"invoke: aws sagemaker-runtime invoke-endpoint --endpoint-name {plan.name} --content-type application/json "
        "--body fileb://request.json response.json"
    )
    return 0
