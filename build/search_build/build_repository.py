"""`searchbar build`: write the model repository for chosen pipelines and target."""
from __future__ import annotations

from pathlib import Path

from .pipelines import build_pipeline, pipeline_names
from .repository import write_repository
from .spec import TARGETS

DEFAULT_PIPELINES = ("query_embedding",)


def add_arguments(parser) -> None:
    parser.add_argument("--pipelines", nargs="+", default=list(DEFAULT_PIPELINES),
                        help=f"pipelines to include (known: {', '.join(pipeline_names())}; 'all' for every one)")
    parser.add_argument("--target", choices=TARGETS, default="local",
                        help="local: Python-backend ONNX Runtime runners (pip tritonserver); "
                             "triton-cpu: onnxruntime_onnx engines; triton-gpu: tensorrt_plan engines")
    parser.add_argument("--out", type=Path, default=Path("model_repository"))
    parser.add_argument("--embedding-checkpoint", help="sentence-transformers checkpoint directory")
    parser.add_argument("--precision", choices=("fp32", "fp16", "bf16", "int8"), default="fp32",
                        help="engine precision (fp16/bf16: TensorRT; int8: ONNX Runtime dynamic quantization)")


def run(args) -> Path:
    names = pipeline_names() if args.pipelines == ["all"] else args.pipelines
    options = {"query_embedding": {"checkpoint": args.embedding_checkpoint}}
    pipelines = [build_pipeline(n, **{k: v for k, v in options.get(n, {}).items() if v is not None}) for n in names]
    engine_builder = None
    if args.target == "triton-gpu":
        from .tensorrt_engines import engine_builder_for
        engine_builder = engine_builder_for(args.precision)
    out = write_repository(pipelines, args.out, args.target, engine_builder=engine_builder)
    print(f"model repository written to {out} (target {args.target}): {', '.join(p.entry for p in pipelines)}")
    return out
