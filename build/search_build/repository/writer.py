"""Write a Triton model repository from pipeline specs for one build target."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable, Iterable

from search_backends.graph_engines import ENGINE_OPENVINO

from search_build.repository.artifacts import ADAPTERS_DIR, folder_sha256, materialize, place
from search_build.repository.configs import ENGINE_FILES, OPENVINO_IR_FILE, model_config, to_pbtxt
from search_build.export.engine_parity import needs_gate, summary
from search_build.export.parity_cache import check_parity_remembered
from search_build.repository.spec import EngineModel, Ensemble, Pipeline, PythonModel, Target

VERSION = "1"
MANIFEST_FILE = "searchbar_manifest.json"
PARITY_FILE = "engine_parity.json"  # the build-time parity gate's report per engine model
ENGINES_NOT_BUILT = "engines_not_built"  # manifest key: engine models left as ONNX by --configs-only
# Config parameter: SHA-256 of the model's version folder as written. Clients read it with the config (the
# batch scorer records it, so a resume after a redeploy with other files is refused).
ARTIFACT_DIGEST_PARAMETER = "artifact_sha256"
# Its value in configs rendered without writing files (spec_configs): same length as a digest, so git compares the
# committed model_repository/*/config.pbtxt with built ones by content (scripts/strip_artifact_digest.py).
UNBUILT_DIGEST = "0" * 64


def write_repository(
    pipelines: Iterable[Pipeline],
    out_dir: str | Path,
    target: Target = "local",
    *,
    engine_builder: Callable[[EngineModel, Path, Path], None] | None = None,
    onnx_transform: Callable[[EngineModel, Path], object] | None = None,
    clean: bool = True,
    configs_only: bool = False,
    progress: Callable[[str], None] = print,
) -> Path:
    """Write every model of ``pipelines`` under ``out_dir``.

    ``engine_builder(model, onnx_path, plan_path)`` turns an ONNX graph into a TensorRT plan for
    the ``triton-gpu`` target (see :mod:`search_build.export.tensorrt_engines`); ``onnx_transform(model,
    onnx_path)`` rewrites each exported graph before it is served or compiled (e.g. int8 quantization,
    :mod:`search_build.export.quantize`). ``configs_only`` writes every config and keeps the ONNX graphs where the
    target wants TensorRT plans, building no engine: for inspecting a triton-gpu repository anywhere.
    """
    out_dir = Path(out_dir)
    pipelines = list(pipelines)
    if clean and out_dir.exists():
        for child in out_dir.iterdir():
            if child.is_dir() and (child / "config.pbtxt").exists():
                shutil.rmtree(child)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    parity: dict[str, dict] = {}
    for pipeline in pipelines:
        for model in pipeline.models:
            if model.name in written:
                if written[model.name] != to_pbtxt(model_config(model, target)):
                    raise ValueError(f"model {model.name} is defined differently by two pipelines")
                continue  # shared model (e.g. one encoder behind two heads): written once
            progress(f"[{pipeline.name}] {model.name}")
            written[model.name] = write_model(
                model, out_dir, target, engine_builder, onnx_transform, configs_only, parity=parity
            )
            if model.name in parity:
                progress(summary(model.name, parity[model.name]))
    # configs_only on triton-gpu: these hold model.onnx where the config wants a TensorRT plan (not servable).
    not_built = sorted(
        {
            m.name
            for p in pipelines
            for m in p.models
            if configs_only and target == "triton-gpu" and isinstance(m, EngineModel)
        }
    )
    manifest = {
        "target": target,
        ENGINES_NOT_BUILT: not_built,
        "pipelines": {p.name: {"entry": p.entry, "models": [m.name for m in p.models]} for p in pipelines},
        # Models reached only through BLS calls: Triton cannot see these dependencies, so
        # deployments that load models explicitly (SageMaker) must list them.
        "bls_calls": {
            m.name: list(m.bls_calls) for p in pipelines for m in p.models if isinstance(m, PythonModel) and m.bls_calls
        },
        # Models whose files a Python model runs in-process: a deployment must ship them, not load them.
        "reads_models": {
            m.name: list(m.reads_models)
            for p in pipelines
            for m in p.models
            if isinstance(m, PythonModel) and m.reads_models
        },
    }
    if not clean:  # models added to an existing repository (searchbar index build): keep what it lists
        manifest = _merged(out_dir / MANIFEST_FILE, manifest)
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    if parity:
        if not clean and (out_dir / PARITY_FILE).exists():
            parity = {**json.loads((out_dir / PARITY_FILE).read_text()), **parity}
        (out_dir / PARITY_FILE).write_text(json.dumps(parity, indent=2) + "\n")
    return out_dir


def _merged(path: Path, manifest: dict) -> dict:
    if not path.exists():
        return manifest
    old = json.loads(path.read_text())
    if old.get("target") != manifest["target"]:
        raise ValueError(f"{path.parent} was built for target {old.get('target')!r}, not {manifest['target']!r}")
    return {
        **old,
        **manifest,
        ENGINES_NOT_BUILT: sorted(set(old.get(ENGINES_NOT_BUILT, [])) | set(manifest[ENGINES_NOT_BUILT])),
        "pipelines": {**old.get("pipelines", {}), **manifest["pipelines"]},
        "bls_calls": {**old.get("bls_calls", {}), **manifest["bls_calls"]},
        "reads_models": {**old.get("reads_models", {}), **manifest["reads_models"]},
    }


def spec_configs(pipelines: Iterable[Pipeline], target: Target = "local") -> dict[str, str]:
    """Each model's config.pbtxt text as the specs render it: what a build writes, with :data:`UNBUILT_DIGEST` for
    the digest of files not written. A model shared by two pipelines must be defined the same by both."""
    texts: dict[str, str] = {}
    for pipeline in pipelines:
        for model in pipeline.models:
            config = model_config(model, target)
            if not isinstance(model, Ensemble):
                config.parameters[ARTIFACT_DIGEST_PARAMETER].string_value = UNBUILT_DIGEST
            text = to_pbtxt(config)
            if texts.setdefault(model.name, text) != text:
                raise ValueError(f"model {model.name} is defined differently by two pipelines")
    return texts


def write_spec_configs(pipelines: Iterable[Pipeline], out_dir: str | Path, target: Target = "local") -> Path:
    """Write only ``<model>/config.pbtxt`` of every model (:func:`spec_configs`): nothing exported, no version folder.
    Folders of models outside ``pipelines`` are removed, as a clean build removes them."""
    texts = spec_configs(pipelines, target)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for child in out_dir.iterdir():
        if child.is_dir() and (child / "config.pbtxt").exists() and child.name not in texts:
            shutil.rmtree(child)
    for name, text in texts.items():
        (out_dir / name).mkdir(exist_ok=True)
        (out_dir / name / "config.pbtxt").write_text(text)
    return out_dir


def write_model(
    model,
    out_dir: Path,
    target: Target,
    engine_builder=None,
    onnx_transform=None,
    configs_only: bool = False,
    parity: dict | None = None,
) -> str:
    spec_text = to_pbtxt(model_config(model, target))  # what two pipelines sharing this model must agree on
    model_dir = out_dir / model.name
    version_dir = model_dir / VERSION
    version_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(model, PythonModel):
        _copy_adapter(model.adapter, version_dir)
        for artifact in model.artifacts:
            materialize(artifact, version_dir / artifact.dest)
    elif isinstance(model, EngineModel):
        onnx_path = materialize(model.onnx, version_dir / "model.onnx")
        gated = target != "triton-gpu" and needs_gate(model)
        reference = model_dir / "fp32_reference.onnx"
        if gated:
            place(onnx_path, reference)  # the FP32 export, before any transform rewrites the served graph
        if onnx_transform is not None:
            onnx_transform(model, onnx_path)
        if gated:
            try:
                # May fall back to FP32; a gate already passed on the same graphs, inputs and CPU is not re-run.
                model, report = check_parity_remembered(model, reference, onnx_path)
            finally:
                reference.unlink()
            if parity is not None:
                parity[model.name] = report
        if target == "local":
            _copy_adapter("text_encoder" if model.tokenizer is not None else "onnx_runner", version_dir)
            if model.tokenizer is not None:
                materialize(model.tokenizer.artifact, version_dir / model.tokenizer.artifact.dest)
                for artifact in model.head.artifacts if model.head is not None else ():
                    materialize(artifact, version_dir / artifact.dest)
        elif target == "triton-cpu" and model.engine == ENGINE_OPENVINO:
            _to_openvino_ir(onnx_path, version_dir / OPENVINO_IR_FILE)
        elif target == "triton-gpu" and not configs_only:
            if engine_builder is None:
                raise RuntimeError("the triton-gpu target needs a TensorRT engine builder")
            engine_builder(model, onnx_path, version_dir / ENGINE_FILES[target])
            onnx_path.unlink()  # the container loads the plan only
    elif not isinstance(model, Ensemble):
        raise TypeError(f"unknown model kind {type(model).__name__}")
    config = model_config(model, target)
    if not isinstance(model, Ensemble):
        config.parameters[ARTIFACT_DIGEST_PARAMETER].string_value = folder_sha256(version_dir)
    (model_dir / "config.pbtxt").write_text(to_pbtxt(config))
    return spec_text


def served_model(model, repository: Path):
    """``model`` as the repository serves it: at the precision its parity gate fell back to, if it did."""
    from dataclasses import replace

    path = Path(repository) / PARITY_FILE
    report = json.loads(path.read_text()).get(model.name, {}) if path.exists() else {}
    if "fell_back" not in report:
        return model
    return replace(model, precision=report["precision"], fallback_precision=None)


def _to_openvino_ir(onnx_path: Path, xml_path: Path) -> None:
    """Triton's openvino backend reads IR (model.xml + model.bin): convert, keep FP32 weights (the precision is
    a compile hint in the config), drop the ONNX file."""
    import openvino as ov

    ov.save_model(ov.convert_model(str(onnx_path)), str(xml_path), compress_to_fp16=False)
    onnx_path.unlink()


def without_artifact_digest(config):
    """A copy of a parsed config without the digest the writer adds (to compare with the spec's config)."""
    copy = type(config)()
    copy.CopyFrom(config)
    if ARTIFACT_DIGEST_PARAMETER in copy.parameters:
        del copy.parameters[ARTIFACT_DIGEST_PARAMETER]
    return copy


def _copy_adapter(adapter: str, version_dir: Path) -> None:
    src = ADAPTERS_DIR / adapter
    if not (src / "model.py").exists():
        raise FileNotFoundError(f"no Triton adapter {src / 'model.py'}")
    for f in [*src.iterdir(), *(ADAPTERS_DIR / "_common").iterdir()]:
        if f.is_file() and f.suffix == ".py":
            shutil.copy2(f, version_dir / f.name)
