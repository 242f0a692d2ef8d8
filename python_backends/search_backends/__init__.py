"""Serving logic for the search-bar models, free of Triton.

Everything here runs with numpy, tokenizers and onnxruntime only, so it can be unit-tested,
benchmarked in-process and reused by the thin Triton adapters in ``python_backends/triton_models``.
"""
