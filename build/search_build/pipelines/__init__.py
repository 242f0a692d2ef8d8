"""One declarative spec per serving pipeline."""
from __future__ import annotations

from typing import Callable

from ..spec import Pipeline

# name -> factory(**options) -> Pipeline; filled by the pipeline modules below.
REGISTRY: dict[str, Callable[..., Pipeline]] = {}


def register(name: str):
    def wrap(factory):
        REGISTRY[name] = factory
        return factory
    return wrap


def build_pipeline(name: str, **options) -> Pipeline:
    _load_all()
    if name not in REGISTRY:
        raise KeyError(f"unknown pipeline {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](**options)


def pipeline_names() -> list[str]:
    _load_all()
    return sorted(REGISTRY)


def _load_all() -> None:
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
