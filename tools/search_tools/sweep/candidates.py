"""Sweep candidates: a serving configuration as tuned batching per composing model, and the lists to measure."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from search_build.repository.batching_overrides import apply_batching
from search_build.repository.configs import model_config, to_pbtxt
from search_build.repository.spec import EngineModel, Ensemble, Pipeline


TUNED_FIELDS = ("max_batch_size", "instance_count", "max_queue_delay_us", "preferred_batch_sizes")
DEFAULT_NAME = "default"


@dataclass
class Candidate:
    """One serving configuration: tuned batching fields per composing model."""

    name: str
    batching: dict[str, dict] = field(default_factory=dict)
    source: str = ""

    def pipeline(self, base: Pipeline) -> Pipeline:
        return apply_batching(base, self.batching)


def composing_models(pipeline: Pipeline) -> list:
    return [m for m in pipeline.models if not isinstance(m, Ensemble)]


def tuned_batching(pipeline: Pipeline) -> dict[str, dict]:
    def value(b, f):
        v = getattr(b, f)
        return list(v) if isinstance(v, tuple) else v  # JSON-shaped, as candidates read back from files

    def engine(m):  # engine models are tuned on an engine: recorded with their batching (batching_overrides)
        return (
            {"engine": m.engine, "precision": m.precision}
            if isinstance(m, EngineModel) and m.follows_build_engine
            else {}
        )

    return {
        m.name: {**{f: value(m.batching, f) for f in TUNED_FIELDS}, **engine(m)} for m in composing_models(pipeline)
    }


def engine_variants(base: Pipeline, base_repository: Path, log=print) -> list[Candidate]:
    """The default batching on each other CPU engine and precision this machine runs and every engine model's
    build-time parity gate accepts (local target: the engine is a config parameter over the same graph)."""
    from dataclasses import replace

    from search_backends.graph_engines import ENGINE_PRECISIONS, cpu_supports_bf16, openvino_available
    from search_build.export.engine_parity import ParityGateError, check_parity, reference_outputs

    engines = [m for m in composing_models(base) if isinstance(m, EngineModel) and m.follows_build_engine]
    if not engines:
        return []
    options = [
        (e, p)
        for e, ps in ENGINE_PRECISIONS.items()
        for p in ps
        if p != "int8" and (e != "openvino" or openvino_available()) and (p != "bf16" or cpu_supports_bf16())
    ]
    default = tuned_batching(base)
    graphs = {m.name: Path(base_repository) / m.name / "1" / "model.onnx" for m in engines}
    references: dict = {}  # FP32 outputs per engine model, computed once for every variant
    out = []
    for engine, precision in options:
        if all((m.engine, m.precision) == (engine, precision) for m in engines):
            continue
        try:
            for m in engines:
                graph = graphs[m.name]
                if m.name not in references:
                    references[m.name] = reference_outputs(m, graph)
                variant = replace(m, engine=engine, precision=precision, fallback_precision=None)
                check_parity(variant, graph, graph, references[m.name])
        except ParityGateError as exc:
            log(f"engine variant {engine} {precision}: not a candidate ({str(exc)[:200]})")
            continue
        batching = {
            name: {**b, "engine": engine, "precision": precision} if name in {m.name for m in engines} else b
            for name, b in default.items()
        }
        out.append(Candidate(describe(batching, base.name), batching, f"default batching on {engine} {precision}"))
    return out


def describe(batching: dict[str, dict], pipeline_name: str) -> str:
    """Short label: 'tokenize x2 b16 d1000, encoder x1 b64 p4 d0' (p: preferred batch sizes)."""
    parts = []
    for model, b in batching.items():
        short = model[len(pipeline_name) + 1 :] if model.startswith(pipeline_name + "_") else model
        preferred = "".join(f" p{n}" for n in b.get("preferred_batch_sizes") or ())
        engine = f" {b['engine']}-{b['precision']}" if "engine" in b else ""
        parts.append(
            f"{short} x{b['instance_count']} b{b['max_batch_size']}{preferred} d{b['max_queue_delay_us']}{engine}"
        )
    return ", ".join(parts)


def keep_request_rows(candidate: "Candidate", base: Pipeline) -> "Candidate":
    """``candidate`` with every max_batch_size below the base's turned into a preferred batch size.

    Model Analyzer searches max_batch_size, but a composing model's max_batch_size also caps the rows
    one request may carry (Triton clamps the ensemble to it): a 4-row engine would turn away a client
    that embeds 32 titles at once. Max B with preferred [b] makes the same b-row batches under load
    (measured: 569/s vs 546/s at concurrency 8 for query_embedding) and keeps B-row requests valid.
    """
    out = {}
    for model, b in candidate.batching.items():
        base_max = base.model(model).batching.max_batch_size
        if b["max_batch_size"] < base_max:
            b = {**b, "max_batch_size": base_max, "preferred_batch_sizes": [b["max_batch_size"]]}
        out[model] = b
    if out == candidate.batching:
        return candidate
    return Candidate(describe(out, base.name), out, candidate.source)


def with_queue_delays(candidates: Sequence[Candidate], delays_us: Sequence[int], pipeline: Pipeline) -> list[Candidate]:
    """Each candidate once per queue delay (applied to every dynamically batched composing model)."""
    dynamic = {m.name for m in composing_models(pipeline) if m.batching.dynamic}
    out = []
    for c in candidates:
        for delay in delays_us:
            b = {m: {**v, "max_queue_delay_us": delay} if m in dynamic else dict(v) for m, v in c.batching.items()}
            out.append(Candidate(describe(b, pipeline.name), b, f"{c.source}, queue delay {delay} us"))
    return unique(out)


def candidate_list(
    base: Pipeline, proposed: Sequence[Candidate], delays_us: Sequence[int], max_candidates: int
) -> list[Candidate]:
    """The default first, then queue-delay variants of the default's own settings and of ``proposed``
    (Model Analyzer's best or the fallback grid), at most ``max_candidates`` besides the default."""
    default = Candidate(DEFAULT_NAME, tuned_batching(base), "spec defaults")
    variants = with_queue_delays(
        [
            Candidate(DEFAULT_NAME, default.batching, "default settings"),
            *(keep_request_rows(c, base) for c in proposed),
        ],
        delays_us,
        base,
    )
    return [default, *[c for c in variants if c.batching != default.batching][:max_candidates]]


def unique(candidates: Sequence[Candidate]) -> list[Candidate]:
    seen, out = set(), []
    for c in candidates:
        key = json.dumps(c.batching, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def fallback_candidates(
    pipeline: Pipeline, instance_counts: Sequence[int], max_batch_sizes: Sequence[int]
) -> list[Candidate]:
    """A uniform grid over every composing model (when Model Analyzer is skipped or fails)."""
    base = tuned_batching(pipeline)
    out = []
    for count in instance_counts:
        for mbs in max_batch_sizes:
            b = {m: {**v, "instance_count": count, "max_batch_size": mbs} for m, v in base.items()}
            out.append(Candidate(describe(b, pipeline.name), b, f"grid x{count} b{mbs}"))
    return out


def render_configs(pipeline: Pipeline, target: str = "local") -> dict[str, str]:
    return {m.name: to_pbtxt(model_config(m, target)) for m in pipeline.models}
