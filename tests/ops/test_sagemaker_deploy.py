"""deploy-sagemaker sends exactly the SageMaker / Application Auto Scaling requests intended
(botocore Stubber validates them against the real service models) and uploads to S3 (moto)."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber

from search_tools.sagemaker_deploy import EndpointPlan, deploy, upload

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecution"
IMAGE = "785573368785.dkr.ecr.us-east-1.amazonaws.com/sagemaker-tritonserver:24.10-py3"
ENV = {
    "SAGEMAKER_TRITON_DEFAULT_MODEL_NAME": "spell_correct",
    "SAGEMAKER_TRITON_ADDITIONAL_ARGS": "--load-model=spell_encoder --load-model=spell_decoder",
}


def _clients():
    kw = dict(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    return boto3.client("sagemaker", **kw), boto3.client("application-autoscaling", **kw)


def test_deploy_requests(tmp_path):
    plan = EndpointPlan(
        name="searchbar-spell",
        model_data_url="s3://bucket/searchbar/model.tar.gz",
        image=IMAGE,
        role_arn=ROLE,
        environment=ENV,
        instance_type="ml.g5.xlarge",
        initial_instance_count=2,
        min_capacity=2,
        max_capacity=6,
        target_invocations_per_instance=750.0,
    )
    sm, aas = _clients()
    arn = "arn:aws:sagemaker:us-east-1:123456789012"
    with Stubber(sm) as sm_stub, Stubber(aas) as aas_stub:
        sm_stub.add_response(
            "create_model",
            {"ModelArn": f"{arn}:model/searchbar-spell-model"},
            {
                "ModelName": "searchbar-spell-model",
                "ExecutionRoleArn": ROLE,
                "PrimaryContainer": {
                    "Image": IMAGE,
                    "ModelDataUrl": "s3://bucket/searchbar/model.tar.gz",
                    "Environment": ENV,
                },
            },
        )
        sm_stub.add_response(
            "create_endpoint_config",
            {"EndpointConfigArn": f"{arn}:endpoint-config/c"},
            {
                "EndpointConfigName": "searchbar-spell-config",
                "ProductionVariants": [
                    {
                        "VariantName": "AllTraffic",
                        "ModelName": "searchbar-spell-model",
                        "InstanceType": "ml.g5.xlarge",
                        "InitialInstanceCount": 2,
                    }
                ],
            },
        )
        sm_stub.add_response(
            "create_endpoint",
            {"EndpointArn": f"{arn}:endpoint/searchbar-spell"},
            {"EndpointName": "searchbar-spell", "EndpointConfigName": "searchbar-spell-config"},
        )
        resource = "endpoint/searchbar-spell/variant/AllTraffic"
        aas_stub.add_response(
            "register_scalable_target",
            {},
            {
                "ServiceNamespace": "sagemaker",
                "ResourceId": resource,
                "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
                "MinCapacity": 2,
                "MaxCapacity": 6,
            },
        )
        aas_stub.add_response(
            "put_scaling_policy",
            {"PolicyARN": "arn:aws:autoscaling:policy/p"},
            {
                "PolicyName": "searchbar-spell-invocations",
                "ServiceNamespace": "sagemaker",
                "ResourceId": resource,
                "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
                "PolicyType": "TargetTrackingScaling",
                "TargetTrackingScalingPolicyConfiguration": {
                    "TargetValue": 750.0,
                    "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
                    "ScaleInCooldown": 300,
                    "ScaleOutCooldown": 60,
                },
            },
        )
        arns = deploy(sm, aas, plan)
        sm_stub.assert_no_pending_responses()
        aas_stub.assert_no_pending_responses()
    assert arns["endpoint"].endswith("endpoint/searchbar-spell") and arns["scaling_policy"].endswith("/p")


def test_upload_puts_the_archive_in_s3(tmp_path):
    moto = pytest.importorskip("moto")
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(b"\x1f\x8b" + b"x" * 1000)
    with moto.mock_aws():
        s3 = boto3.client("s3", region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
        s3.create_bucket(Bucket="models")
        url = upload(s3, archive, "models", "searchbar/ep/model.tar.gz")
        assert url == "s3://models/searchbar/ep/model.tar.gz"
        assert s3.get_object(Bucket="models", Key="searchbar/ep/model.tar.gz")["Body"].read() == archive.read_bytes()


def test_cli_deploys_with_the_packaged_environment(tmp_path, monkeypatch):
    """The CLI path end to end against moto: upload, model with the package's environment, endpoint, scaling."""
    moto = pytest.importorskip("moto")
    from search_tools.cli import main

    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(b"\x1f\x8b" + b"y" * 100)
    (tmp_path / "sagemaker_container.json").write_text(json.dumps({"environment": ENV}))
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(key, value)
    with moto.mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(Bucket="models")
        assert (
            main(
                [
                    "deploy-sagemaker",
                    "--archive",
                    str(archive),
                    "--name",
                    "qe",
                    "--bucket",
                    "models",
                    "--role-arn",
                    ROLE,
                    "--region",
                    REGION,
                    "--instance-type",
                    "ml.g4dn.xlarge",
                ]
            )
            == 0
        )  # moto's instance list predates ml.g5
        sm = boto3.client("sagemaker", region_name=REGION)
        container = sm.describe_model(ModelName="qe-model")["PrimaryContainer"]
        assert container["Environment"] == ENV and container["ModelDataUrl"] == "s3://models/searchbar/qe/model.tar.gz"
        assert container["Image"] == IMAGE
        assert sm.describe_endpoint(EndpointName="qe")["EndpointConfigName"] == "qe-config"
        policies = boto3.client("application-autoscaling", region_name=REGION).describe_scaling_policies(
            ServiceNamespace="sagemaker"
        )["ScalingPolicies"]
        assert [
            p["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"]["PredefinedMetricType"]
            for p in policies
        ] == ["SageMakerVariantInvocationsPerInstance"]
