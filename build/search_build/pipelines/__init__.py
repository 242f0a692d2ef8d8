"""One declarative spec per serving pipeline.

Every factory is ``factory(checkpoint=None, *, target="local", precision="fp32", **options) -> Pipeline``: the
build target and precision reach each one, and each returns exactly the models its target serves. A pipeline
whose graphs are the same on every target (the BERT encoders) leaves the per-target engine to the repository
writer (ONNX Runtime runner, onnxruntime_onnx or a TensorRT plan of the one exported graph).
"""

from __future__ import annotations

from typing import Callable

from search_build.repository.spec import TARGETS, Pipeline, Target

# name -> factory(**options) -> Pipeline; filled by the pipeline modules below.
REGISTRY: dict[str, Callable[..., Pipeline]] = {}


def register(name: str):
    def wrap(factory):
        REGISTRY[name] = factory
        return factory

    return wrap


def build_pipeline(
    name: str, *, target: Target = "local", precision: str = "auto", engine: str = "auto", **options
) -> Pipeline:
    """``engine``/``precision`` "auto": the fastest engine of the target that keeps parity
    (:mod:`search_build.repository.engine_choice`)."""
    from search_build.repository.engine_choice import choose_engine, with_engine

    _load_all()
    if name not in REGISTRY:
        raise KeyError(f"unknown pipeline {name!r}; known: {', '.join(sorted(REGISTRY))}")
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    choice = choose_engine(target, engine, precision)
    return with_engine(REGISTRY[name](target=target, precision=choice.precision, **options), choice)


def pipeline_names() -> list[str]:
    _load_all()
    return sorted(REGISTRY)


def _load_all() -> None:
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
