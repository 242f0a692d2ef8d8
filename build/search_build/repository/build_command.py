"""`searchbar build`: write the model repository for chosen pipelines and target."""

from __future__ import annotations

from pathlib import Path

from search_build.repository.batching_overrides import (
    apply_batching,
    load_overrides,
    overrides_for_build,
    stale_entries,
)
from search_build.pipelines import build_pipeline, pipeline_names
from search_build.repository.writer import write_repository, write_spec_configs
from search_build.repository.engine_choice import (
    AUTO,
    ENGINE_CHOICES,
    PRECISION_CHOICES,
    EngineChoice,
    EngineChoiceError,
    choose_engine,
)
from search_build.repository.spec import TARGETS, Pipeline
from search_backends.contracts import search_bar as C
from search_backends.contracts.spell_correct import ENGINE_MODES

DEFAULT_PIPELINES = ("query_embedding",)


def add_arguments(parser) -> None:
    parser.add_argument(
        "--pipelines",
        nargs="+",
        default=list(DEFAULT_PIPELINES),
        help=f"pipelines to include (known: {', '.join(pipeline_names())}; 'all' for every one)",
    )
    parser.add_argument(
        "--target",
        choices=TARGETS,
        default="local",
        help="local: Python-backend ONNX Runtime runners (pip tritonserver); "
        "triton-cpu: onnxruntime_onnx engines; triton-gpu: tensorrt_plan engines",
    )
    parser.add_argument("--out", type=Path, default=Path("model_repository"))
    parser.add_argument("--embedding-checkpoint", help="sentence-transformers checkpoint directory")
    parser.add_argument(
        "--precision",
        choices=PRECISION_CHOICES,
        default=AUTO,
        help="engine precision. auto: bf16 on CPU targets where the CPU has bf16 kernels (OpenVINO), "
        "else fp32; fp16: TensorRT only; int8: ONNX Runtime dynamic quantization on CPU targets. "
        "Every choice but FP32 ONNX Runtime passes a parity gate at build time",
    )
    parser.add_argument(
        "--engine",
        choices=ENGINE_CHOICES,
        default=AUTO,
        help="CPU targets' encoder engine. auto: openvino (the local runner / Triton's openvino "
        "backend), onnxruntime for int8; triton-gpu always builds TensorRT plans",
    )
    parser.add_argument(
        "--spell-engine",
        choices=ENGINE_MODES,
        default=None,
        help="spell_generate's decoding engine (default per target: ctranslate2 on the CPU targets, "
        "bls over TensorRT plans on triton-gpu)",
    )
    add_catalog_arguments(parser)
    parser.add_argument(
        "--configs-only",
        action="store_true",
        help="write every config (and the ONNX graphs) without building TensorRT engines: inspect "
        "and validate a triton-gpu repository on a machine without TensorRT (not servable)",
    )
    parser.add_argument(
        "--specs-only",
        action="store_true",
        help="write only each model's config.pbtxt as the specs render it: nothing exported, "
        "artifact_sha256 left as zeros (the text committed under model_repository/; not servable)",
    )
    parser.add_argument(
        "--batching-overrides",
        type=Path,
        default=None,
        help="JSON of per-model batching chosen by `searchbar sweep` (default for --target local: "
        "analyzer_configs/batching_overrides.json when it exists)",
    )
    parser.add_argument(
        "--no-batching-overrides",
        action="store_true",
        help="build with the specs' own batching, ignoring any sweep result",
    )


def add_catalog_arguments(parser) -> None:
    """Options of catalog_search (and search_bar, which includes it)."""
    parser.add_argument(
        "--catalog",
        type=Path,
        default=None,
        help="items to search: CSV, JSONL or Parquet with 'id' and 'title' (other columns are returned "
        "as ITEM_FIELDS); default: the demo catalog of 120k DBpedia titles",
    )
    parser.add_argument(
        "--catalog-backend",
        choices=C.BACKENDS,
        default=C.BACKEND_FAISS,
        help="faiss: an index file in the model folder; milvus: a collection at --milvus-uri",
    )
    parser.add_argument(
        "--index-kind",
        choices=C.INDEX_KINDS,
        default="auto",
        help=f"auto: exact up to {C.EXACT_MAX_ITEMS} items, HNSW above",
    )
    parser.add_argument(
        "--milvus-uri",
        default=None,
        help="Milvus cluster URI (http://host:19530), a milvus-lite server, or a Milvus Lite .db path; "
        f"credentials from ${C.MILVUS_TOKEN_ENV}",
    )
    parser.add_argument("--milvus-collection", default=None)
    parser.add_argument(
        "--spell-num-beams",
        type=int,
        default=None,
        help=f"search_bar's beams for spell correction (default {C.DEFAULT_SPELL_NUM_BEAMS}; 0: the spell model's "
        "generation config, beam 4)",
    )


def catalog_options(args) -> dict:
    return {
        "catalog": getattr(args, "catalog", None),
        "catalog_backend": getattr(args, "catalog_backend", None),
        "index_kind": getattr(args, "index_kind", None),
        "milvus_uri": getattr(args, "milvus_uri", None),
        "milvus_collection": getattr(args, "milvus_collection", None),
    }


def run(args) -> Path:
    configs_only = getattr(args, "configs_only", False)
    pipelines, choice = pipelines_for(args)
    if getattr(args, "specs_only", False):
        out = write_spec_configs(pipelines, args.out, args.target)
        print(
            f"spec configs written to {out} (target {args.target}; no artifacts, not servable): "
            f"{', '.join(p.entry for p in pipelines)}"
        )
        return out
    engine_builder, onnx_transform, drift = None, None, {}
    if args.target == "triton-gpu" and not configs_only:
        from search_build.export.tensorrt_engines import engine_builder_for

        engine_builder = engine_builder_for(choice.precision)
    elif choice.precision == "int8":
        from search_build.export.quantize import int8_transform

        onnx_transform = int8_transform(drift)
    from search_build.export.engine_parity import ParityGateError

    try:
        out = write_repository(
            pipelines,
            args.out,
            args.target,
            engine_builder=engine_builder,
            onnx_transform=onnx_transform,
            configs_only=configs_only,
        )
    except ParityGateError as exc:
        raise SystemExit(f"build stopped: {exc}") from None
    if drift:
        from search_build.export.quantize import write_report

        report = write_report(drift, out / "quantization_report.json")
        for model, outputs in drift.items():
            print(
                f"int8 {model}: "
                + "; ".join(
                    f"{o} max|diff| {s['max_abs']:.4f}"
                    + (f" min cosine {s['min_cosine']:.4f}" if "min_cosine" in s else "")
                    for o, s in outputs.items()
                )
            )
        print(f"drift vs fp32 written to {report}")
    print(
        f"model repository written to {out} (target {args.target}): {', '.join(p.entry for p in pipelines)}"
        + (" -- configs only: ONNX graphs in place of engines, not servable" if configs_only else "")
    )
    return out


def pipelines_for(args) -> tuple[list[Pipeline], EngineChoice]:
    """The pipelines a build with these arguments writes (engine choice and sweep batching applied)."""
    names = pipeline_names() if args.pipelines == ["all"] else args.pipelines
    try:
        choice = choose_engine(args.target, getattr(args, "engine", AUTO), args.precision)
    except EngineChoiceError as exc:
        raise SystemExit(str(exc)) from None
    for note in choice.notes:
        print(f"note: {note}")
    print(f"engines: {choice.engine} {choice.precision} (target {args.target})")
    options = {
        "query_embedding": {"checkpoint": args.embedding_checkpoint},
        "spell_correct": {"engine_mode": getattr(args, "spell_engine", None)},
        C.CATALOG_SEARCH: {"checkpoint": args.embedding_checkpoint, **catalog_options(args)},
        C.SEARCH_BAR: {
            "checkpoint": args.embedding_checkpoint,
            "spell_engine": getattr(args, "spell_engine", None),
            "spell_num_beams": getattr(args, "spell_num_beams", None),
            **catalog_options(args),
        },
    }
    pipelines = [
        build_pipeline(
            n,
            target=args.target,
            precision=args.precision,
            engine=getattr(args, "engine", AUTO),
            **{k: v for k, v in options.get(n, {}).items() if v is not None},
        )
        for n in names
    ]
    return _with_batching_overrides(args, pipelines), choice


def _with_batching_overrides(args, pipelines: list[Pipeline]) -> list[Pipeline]:
    overrides_path = overrides_for_build(
        getattr(args, "batching_overrides", None), args.target, disabled=getattr(args, "no_batching_overrides", False)
    )
    if overrides_path:
        overrides = load_overrides(overrides_path)
        chosen_by_user = getattr(args, "engine", AUTO) != AUTO or args.precision != AUTO
        stale = {
            m: why
            for p in pipelines
            for m, why in stale_entries(p, overrides, engine_from_overrides=not chosen_by_user).items()
        }
        for model, why in stale.items():
            print(f"batching of {model} in {overrides_path} not applied: {why}")
        overrides = {m: v for m, v in overrides.items() if m not in stale}
        pipelines = [apply_batching(p, overrides, engine_from_overrides=not chosen_by_user) for p in pipelines]
        tuned = sorted({m.name for p in pipelines for m in p.models} & set(overrides))
        print(f"batching from {overrides_path}: {', '.join(tuned) or 'no model of these pipelines'}")
    return pipelines
