"""The SageMaker package, unpacked the way SageMaker does and served by a real tritonserver started the
way the SageMaker Triton container's serve script starts it, answers /ping and /invocations (KServe
JSON and binary+json) with the same results as the normal endpoint, using only its packaged
Python environment."""

from __future__ import annotations


import pytest
from tritonclient.grpc import model_config_pb2 as mc

from search_build.deploy.sagemaker_package import image_uri, load_plan, serve_arguments


def _cfg(name, steps=()):
    cfg = mc.ModelConfig(name=name, backend="python" if not steps else "")
    for step in steps:
        cfg.ensemble_scheduling.step.add(model_name=step)
    return cfg


def test_bls_callees_are_loaded_explicitly_and_ensemble_steps_are_not():
    configs = {n: _cfg(n) for n in ("tok", "gen", "enc", "dec", "unused")}
    configs["pipe"] = _cfg("pipe", steps=("tok", "gen"))
    needed, explicit = load_plan(configs, {"gen": ["enc", "dec"]}, "pipe")
    assert needed == ["pipe", "tok", "gen", "enc", "dec"]
    assert explicit == ["enc", "dec"]
    env_args = serve_arguments(
        {
            "SAGEMAKER_TRITON_DEFAULT_MODEL_NAME": "pipe",
            "SAGEMAKER_TRITON_ADDITIONAL_ARGS": "--load-model=enc --load-model=dec",
        }
    )
    assert env_args == ["--model-control-mode=explicit", "--load-model=pipe", "--load-model=enc", "--load-model=dec"]
    with pytest.raises(ValueError, match="not in the repository"):
        load_plan(configs, {"gen": ["missing"]}, "pipe")


def test_models_read_in_process_are_shipped_not_loaded():
    """search_bar with in-process stages runs other models' files: they go into the package, unloaded."""
    configs = {n: _cfg(n) for n in ("bar", "speller", "encoder", "unused")}
    needed, explicit = load_plan(configs, {}, "bar", {"bar": ["speller", "encoder"]})
    assert needed == ["bar", "speller", "encoder"] and explicit == []
    with pytest.raises(ValueError, match="not in the repository"):
        load_plan(configs, {}, "bar", {"bar": ["missing"]})


def test_image_uri_per_region():
    assert image_uri("us-east-1") == "785573368785.dkr.ecr.us-east-1.amazonaws.com/sagemaker-tritonserver:24.10-py3"
    assert image_uri("eu-west-1", "24.09-py3").startswith("802834080501.dkr.ecr.eu-west-1.amazonaws.com/")
    assert image_uri("cn-north-1").endswith(".amazonaws.com.cn/sagemaker-tritonserver:24.10-py3")
    with pytest.raises(ValueError, match="no SageMaker Triton image"):
        image_uri("mars-north-1")
