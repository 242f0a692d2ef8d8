"""Batching chosen by the configuration sweeps, kept as a small JSON file the build reads back.

    {"models": {"query_embedding_encoder": {"max_batch_size": 16, "max_queue_delay_us": 1000,
                                             "instance_count": 2}}}

Keys are model names (a model shared by two pipelines gets one setting); fields are those of
:class:`search_build.repository.spec.Batching`; fields left out keep the spec's value. Engine models also carry the
``engine`` and ``precision`` they were tuned with (the sweep varies them): batching measured on one engine says
nothing about another, so an engine model's entry applies only to a build on that engine -- or, when the build
left engine and precision to ``auto``, it sets them (the gate still checks the precision at build time).
"""

from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path

from search_build.repository.artifacts import PROJECT_ROOT
from search_build.repository.spec import Batching, EngineModel, Ensemble, Pipeline

BATCHING_FIELDS = {f.name for f in fields(Batching)}
ENGINE_FIELDS = ("engine", "precision")
# What `searchbar sweep --apply` writes. Measured on the local target (the pip tritonserver with
# Python-backend ONNX Runtime engines), so `searchbar build` reads it back for that target only;
# other targets take it with an explicit --batching-overrides.
TUNED_OVERRIDES = PROJECT_ROOT / "analyzer_configs" / "batching_overrides.json"
TUNED_TARGET = "local"


def overrides_for_build(
    explicit: str | Path | None, target: str, *, disabled: bool = False, tuned: Path | None = None
) -> Path | None:
    """The overrides file a build applies: ``explicit`` if given, else the sweep's file for its target."""
    if disabled:
        return None
    if explicit:
        return Path(explicit)
    tuned = tuned or TUNED_OVERRIDES
    return tuned if target == TUNED_TARGET and tuned.exists() else None


def updated_batching(base: Batching, changes: dict) -> Batching:
    changes = {k: v for k, v in changes.items() if k not in ENGINE_FIELDS}
    unknown = set(changes) - BATCHING_FIELDS
    if unknown:
        raise ValueError(f"unknown batching fields {sorted(unknown)}; known: {sorted(BATCHING_FIELDS)}")
    if "preferred_batch_sizes" in changes:
        changes = {**changes, "preferred_batch_sizes": tuple(changes["preferred_batch_sizes"])}
    return replace(base, **changes)


def check_engine_fields(changes: dict) -> None:
    from search_backends.graph_engines import check_engine_precision

    if any(k in changes for k in ENGINE_FIELDS):
        if not all(k in changes for k in ENGINE_FIELDS):
            raise ValueError(f"give both {' and '.join(ENGINE_FIELDS)}")
        check_engine_precision(changes["engine"], changes["precision"])


def stale_entries(pipeline: Pipeline, per_model: dict[str, dict], *, engine_from_overrides: bool) -> dict[str, str]:
    """Engine models whose entry was tuned on another engine than the build's: model -> why it is skipped."""
    stale = {}
    for m in pipeline.models:
        if not isinstance(m, EngineModel) or m.name not in per_model or not m.follows_build_engine:
            continue
        entry = per_model[m.name]
        if "engine" not in entry:
            stale[m.name] = "tuned before the sweep recorded engines (ONNX Runtime FP32): re-run `searchbar sweep`"
        elif not engine_from_overrides and (entry["engine"], entry["precision"]) != (m.engine, m.precision):
            stale[m.name] = f"tuned on {entry['engine']} {entry['precision']}, this build runs {m.engine} {m.precision}"
    return stale


def apply_batching(pipeline: Pipeline, per_model: dict[str, dict], *, engine_from_overrides: bool = True) -> Pipeline:
    """``pipeline`` with the given models' batching (and engine models' engine) changed; names it does not hold
    are ignored, and so are engine entries tuned on another engine when ``engine_from_overrides`` is false. (The
    build also drops entries :func:`stale_entries` finds in a file, e.g. ones older than engine recording.)

    Ensembles keep their own max_batch_size unless a composing model now allows fewer rows
    (Triton refuses to load an ensemble whose max_batch_size exceeds a step's).
    """
    stale = {
        m
        for m, why in stale_entries(pipeline, per_model, engine_from_overrides=engine_from_overrides).items()
        if "engine" in per_model[m]
    }
    for model in pipeline.models:
        if model.name in per_model and model.name not in stale and not isinstance(model, Ensemble):
            changes = per_model[model.name]
            pipeline = pipeline.with_batching(model.name, updated_batching(model.batching, changes))
            if isinstance(model, EngineModel) and "engine" in changes and model.follows_build_engine:
                pipeline = replace(
                    pipeline,
                    models=tuple(
                        replace(m, engine=changes["engine"], precision=changes["precision"], fallback_precision=None)
                        if m.name == model.name
                        else m
                        for m in pipeline.models
                    ),
                )
    return clamp_ensembles(pipeline)


def clamp_ensembles(pipeline: Pipeline) -> Pipeline:
    limits = {m.name: m.batching.max_batch_size for m in pipeline.models if not isinstance(m, Ensemble)}
    models = []
    for m in pipeline.models:
        if isinstance(m, Ensemble):
            steps = [limits[s.model] for s in m.steps if s.model in limits]
            if steps and min(steps) < m.max_batch_size:
                m = replace(m, max_batch_size=min(steps))
        models.append(m)
    return replace(pipeline, models=tuple(models))


def load_overrides(path: str | Path) -> dict[str, dict]:
    data = json.loads(Path(path).read_text())
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise ValueError(f"{path}: 'models' must map model names to batching fields")
    for name, changes in models.items():
        try:
            if not isinstance(changes, dict):
                raise ValueError("expected a mapping of batching fields")
            updated_batching(Batching(), changes)  # validates names and values early, with the file at hand
            check_engine_fields(changes)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: models.{name}: {exc}") from None
    return models


def save_overrides(path: str | Path, per_model: dict[str, dict], *, source: dict | None = None) -> Path:
    """Merge ``per_model`` into the overrides file (other models' entries are kept)."""
    path = Path(path)
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault("models", {}).update(per_model)
    if source:
        data.setdefault("sources", {}).update(source)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path
