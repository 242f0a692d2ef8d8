"""`searchbar package-sagemaker`: a model repository as the ``model.tar.gz`` of a SageMaker Triton endpoint.

What the SageMaker Triton container (``sagemaker-tritonserver``, script ``/usr/bin/serve``) does with
it, and so what the package provides:

* It unpacks the archive into ``/opt/ml/model`` and uses that as the model repository, so model
  folders sit at the archive root.
* Single-model mode starts ``tritonserver --model-control-mode=explicit
  --load-model=$SAGEMAKER_TRITON_DEFAULT_MODEL_NAME $SAGEMAKER_TRITON_ADDITIONAL_ARGS`` and routes
  ``/invocations`` to the default model. Loading an ensemble loads its steps, but models reached
  only through BLS calls are invisible to Triton: they go in ``SAGEMAKER_TRITON_ADDITIONAL_ARGS`` as
  ``--load-model=...`` (supported from the 23.06 containers on).
* Python-backend models run on the container's Python 3.10 stub, which has none of our packages.
  Each one gets ``EXECUTION_ENV_PATH = $$TRITON_MODEL_DIRECTORY/python_env``: an unpacked
  environment (``bin/activate`` + ``lib/python3.X/site-packages``) inside its own model folder,
  because the Python backend leaves paths escaping ``$$TRITON_MODEL_DIRECTORY`` undefined. The
  copies are hard links, so the archive stores the environment once. Directory environments
  (Triton >= 23.07) skip the per-model unpacking a ``.tar.gz`` environment would cost at load time.

The environment is built with pip for the container's Python (``--python-env pypi``, the default),
copied from this virtual environment (``installed``: same Python only, used by the tests), or taken
from a conda-pack tarball/directory you made (``--python-env PATH``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from search_build.repository.artifacts import ADAPTERS_DIR, PROJECT_ROOT, link_or_copy
from search_build.repository.writer import ENGINES_NOT_BUILT, MANIFEST_FILE

# Triton 24.10 = server 2.51, the version the pip tritonserver here runs; its Python stub is 3.10.
DEFAULT_IMAGE_TAG = "24.10-py3"
CONTAINER_PYTHON = "3.10"
CONTAINER_INTERPRETER = "/usr/bin/python3.10"
CONTAINER_PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")
ENV_DIRNAME = "python_env"
EXECUTION_ENV_PATH = f"$$TRITON_MODEL_DIRECTORY/{ENV_DIRNAME}"
REQUIREMENTS = PROJECT_ROOT / "python_backends" / "requirements.txt"
SEARCH_BACKENDS = ADAPTERS_DIR.parent / "search_backends"
CONTAINER_INFO = "sagemaker_container.json"

# ECR accounts of the SageMaker Triton images (as used by the AWS SageMaker Triton examples).
IMAGE_ACCOUNTS = {
    "us-east-1": "785573368785",
    "us-east-2": "007439368137",
    "us-west-1": "710691900526",
    "us-west-2": "301217895009",
    "eu-west-1": "802834080501",
    "eu-west-2": "205493899709",
    "eu-west-3": "254080097072",
    "eu-north-1": "601324751636",
    "eu-south-1": "966458181534",
    "eu-central-1": "746233611703",
    "ap-east-1": "110948597952",
    "ap-south-1": "763008648453",
    "ap-northeast-1": "941853720454",
    "ap-northeast-2": "151534178276",
    "ap-southeast-1": "324986816169",
    "ap-southeast-2": "355873309152",
    "cn-northwest-1": "474822919863",
    "cn-north-1": "472730292857",
    "sa-east-1": "756306329178",
    "ca-central-1": "464438896020",
    "me-south-1": "836785723513",
    "af-south-1": "774647643957",
}


def image_uri(region: str, tag: str = DEFAULT_IMAGE_TAG) -> str:
    if region not in IMAGE_ACCOUNTS:
        raise ValueError(
            f"no SageMaker Triton image account known for {region!r}; known: {', '.join(sorted(IMAGE_ACCOUNTS))}"
        )
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{IMAGE_ACCOUNTS[region]}.dkr.ecr.{region}.{domain}/sagemaker-tritonserver:{tag}"


# ---------------------------------------------------------------------------------------- what to load


def read_configs(repository: Path) -> dict[str, mc.ModelConfig]:
    return {
        p.parent.name: text_format.Parse(p.read_text(), mc.ModelConfig())
        for p in sorted(Path(repository).glob("*/config.pbtxt"))
    }


def read_manifest(repository: Path) -> dict:
    path = Path(repository) / MANIFEST_FILE
    return json.loads(path.read_text()) if path.exists() else {"pipelines": {}, "bls_calls": {}}


def choose_default_model(repository: Path, requested: str | None = None) -> str:
    """The requested model, else the entry of the repository's only pipeline."""
    configs, manifest = read_configs(repository), read_manifest(repository)
    if requested:
        if requested not in configs:
            raise ValueError(f"{requested!r} is not a model of {repository} (models: {', '.join(configs)})")
        return requested
    entries = [p["entry"] for p in manifest.get("pipelines", {}).values()]
    if len(entries) != 1:
        raise ValueError(
            f"{repository} serves {len(entries)} pipelines ({', '.join(entries) or 'none'}): "
            "choose the endpoint's model with --default-model"
        )
    return entries[0]


def load_plan(
    configs: dict[str, mc.ModelConfig],
    bls_calls: dict[str, list[str]],
    default_model: str,
    reads_models: dict[str, list[str]] | None = None,
) -> tuple[list[str], list[str]]:
    """(every model the default model needs, the ones Triton must be told to load).

    Ensemble steps load with their ensemble; BLS callees (and everything they need) do not, so
    they are returned as the explicit loads, in a stable order. Models whose files another runs in-process
    (``reads_models``) are needed, for their files, but not loaded.
    """
    reads_models = reads_models or {}
    needed: list[str] = []
    explicit: list[str] = []

    def visit(name: str, via_bls: bool) -> None:
        if name not in configs:
            raise ValueError(f"model {name!r} is needed by the endpoint but is not in the repository")
        if via_bls and name not in explicit:
            explicit.append(name)
        if name in needed:
            return
        needed.append(name)
        for step in configs[name].ensemble_scheduling.step:
            visit(step.model_name, False)
        for callee in bls_calls.get(name, []):
            visit(callee, True)
        for source in reads_models.get(name, []):
            visit(source, False)

    visit(default_model, False)
    return needed, [m for m in explicit if m != default_model]


def container_environment(default_model: str, explicit_loads: list[str]) -> dict[str, str]:
    env = {
        "SAGEMAKER_TRITON_DEFAULT_MODEL_NAME": default_model,
        # The serve script turns on verbose logging unless told otherwise: costly per request.
        "SAGEMAKER_TRITON_LOG_VERBOSE": "0",
    }
    if explicit_loads:
        env["SAGEMAKER_TRITON_ADDITIONAL_ARGS"] = " ".join(f"--load-model={m}" for m in explicit_loads)
    return env


def serve_arguments(environment: dict[str, str]) -> list[str]:
    """The model-loading flags the container's serve script derives from ``environment`` (single-model mode)."""
    return [
        "--model-control-mode=explicit",
        f"--load-model={environment['SAGEMAKER_TRITON_DEFAULT_MODEL_NAME']}",
    ] + shlex.split(environment.get("SAGEMAKER_TRITON_ADDITIONAL_ARGS", ""))


# ---------------------------------------------------------------------------------------- environment

ACTIVATE = """\
# Sourced (bash) by Triton's Python backend before it starts a model's stub: puts this environment's
# python3 first on PATH, so the stub's embedded interpreter finds pyvenv.cfg and our site-packages.
_searchbar_env="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export VIRTUAL_ENV="$_searchbar_env"
export PATH="$_searchbar_env/bin:$PATH"
unset PYTHONHOME
"""


def _requirements(path: Path = REQUIREMENTS) -> list[str]:
    return [line.split("#")[0].strip() for line in path.read_text().splitlines() if line.split("#")[0].strip()]


def _skeleton(dest: Path, interpreter: str, python_version: str) -> Path:
    """bin/activate, bin/python3 -> the container's interpreter, pyvenv.cfg; returns site-packages."""
    (dest / "bin").mkdir(parents=True, exist_ok=True)
    (dest / "bin" / "activate").write_text(ACTIVATE)
    for name in ("python", "python3", f"python{python_version}"):
        (dest / "bin" / name).symlink_to(interpreter)
    (dest / "pyvenv.cfg").write_text(
        f"home = {Path(interpreter).parent}\ninclude-system-site-packages = false\nversion = {python_version}\n"
    )
    site = dest / "lib" / f"python{python_version}" / "site-packages"
    site.mkdir(parents=True, exist_ok=True)
    shutil.copytree(SEARCH_BACKENDS, site / "search_backends", ignore=shutil.ignore_patterns("__pycache__"))
    return site


def build_env_from_pypi(
    dest: Path,
    *,
    python_version: str = CONTAINER_PYTHON,
    interpreter: str = CONTAINER_INTERPRETER,
    requirements: list[str] | None = None,
) -> Path:
    """Install the Python-backend requirements as manylinux wheels for the container's Python."""
    site = _skeleton(dest, interpreter, python_version)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-compile",
        "--target",
        str(site),
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        *[f"--platform={p}" for p in CONTAINER_PLATFORMS],
        *(requirements or _requirements()),
    ]
    subprocess.run(cmd, check=True)
    return dest


def build_env_from_installed(dest: Path, *, requirements: list[str] | None = None) -> Path:
    """Copy the requirements and their dependencies from this interpreter's environment.

    Only valid where the serving stub has this interpreter's Python version (the local tritonserver).
    """

    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    site = _skeleton(dest, os.path.realpath(sys._base_executable), version)
    for dist in _closure([re.split(r"[\s<>=!~;\[(]", r, maxsplit=1)[0] for r in (requirements or _requirements())]):
        for rel in dist.files or []:
            src = Path(dist.locate_file(rel))
            if "__pycache__" in rel.parts or ".." in rel.parts or not src.is_file():
                continue  # console scripts live outside site-packages; bytecode is rebuilt
            target = site / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    return dest


def _closure(names: list[str]):
    import importlib.metadata as md
    from packaging.markers import Marker

    seen: dict[str, md.Distribution] = {}
    stack = list(names)
    while stack:
        name = stack.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            raise RuntimeError(f"{name} is required by the Python backends but is not installed here") from None
        seen[key] = dist
        for req in dist.requires or []:
            spec, _, marker = req.partition(";")
            if marker and not Marker(marker).evaluate({"extra": ""}):
                continue
            stack.append(re.split(r"[\s<>=!~\[(]", spec.strip(), maxsplit=1)[0])
    return list(seen.values())


def prepare_env(source: str | Path, dest: Path) -> Path:
    """``pypi`` / ``installed`` build one; a path is a conda-pack tarball or an environment folder."""
    if source == "pypi":
        return build_env_from_pypi(dest)
    if source == "installed":
        return build_env_from_installed(dest)
    source = Path(source)
    if source.is_dir():
        shutil.copytree(source, dest, symlinks=True)
    elif tarfile.is_tarfile(source):
        with tarfile.open(source) as tar:
            tar.extractall(dest, filter="tar")
    else:
        raise ValueError(f"--python-env {source}: expected pypi, installed, a folder or a .tar.gz environment")
    if not (dest / "bin" / "activate").exists():
        raise ValueError(f"{source} has no bin/activate: the Python backend needs one (make it with conda-pack)")
    return dest


# ---------------------------------------------------------------------------------------- package


@dataclass
class Package:
    archive: Path
    default_model: str
    models: list[str]  # every model folder the archive holds
    environment: dict[str, str]
    python_models: list[str] = field(default_factory=list)
    # The models Triton brings up: the others are shipped for their files only (run in-process by another model).
    loaded: list[str] = field(default_factory=list)

    def describe(self, region: str = "us-east-1", tag: str = DEFAULT_IMAGE_TAG) -> dict:
        return {
            "archive": str(self.archive),
            "default_model": self.default_model,
            "models": self.models,
            "loaded": self.loaded,
            "python_models": self.python_models,
            "environment": self.environment,
            "image_uri_pattern": f"<account>.dkr.ecr.<region>.amazonaws.com/sagemaker-tritonserver:{tag}",
            "image_uri": image_uri(region, tag),
            "image_accounts": {
                r: IMAGE_ACCOUNTS[r] for r in ("us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-northeast-1")
            },
        }


def package(
    repository: str | Path,
    out: str | Path,
    *,
    default_model: str | None = None,
    python_env: str | Path | None = "pypi",
    compresslevel: int = 6,
) -> Package:
    """Write ``out`` (a model.tar.gz) holding what ``default_model`` needs from ``repository``."""
    repository, out = Path(repository), Path(out)
    configs, manifest = read_configs(repository), read_manifest(repository)
    if manifest.get(ENGINES_NOT_BUILT):
        raise ValueError(
            f"{repository} was built with --configs-only: {', '.join(manifest[ENGINES_NOT_BUILT])} "
            "hold ONNX graphs, not engines; build it again without that flag to deploy it"
        )
    if not configs:
        raise FileNotFoundError(f"{repository} holds no models; run `searchbar build` first")
    default_model = choose_default_model(repository, default_model)
    models, explicit = load_plan(
        configs, manifest.get("bls_calls", {}), default_model, manifest.get("reads_models", {})
    )
    loaded, _ = load_plan(configs, manifest.get("bls_calls", {}), default_model)
    python_models = [m for m in models if configs[m].backend == "python"]
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".sagemaker-stage-") as tmp:
        stage, env_dir = Path(tmp) / "repository", Path(tmp) / "env"
        stage.mkdir()
        for name in models:
            shutil.copytree(repository / name, stage / name, copy_function=link_or_copy, symlinks=True)
        if python_env is not None and python_models:
            prepare_env(python_env, env_dir)
        for name in python_models:
            cfg = configs[name]
            if python_env is not None:
                cfg.parameters["EXECUTION_ENV_PATH"].string_value = EXECUTION_ENV_PATH
                shutil.copytree(env_dir, stage / name / ENV_DIRNAME, copy_function=link_or_copy, symlinks=True)
            (stage / name / "config.pbtxt").unlink()  # a hard link to the source repository: never write through it
            (stage / name / "config.pbtxt").write_text(text_format.MessageToString(cfg))
        manifest_out = dict(manifest, sagemaker={"default_model": default_model, "explicit_loads": explicit})
        (stage / MANIFEST_FILE).write_text(json.dumps(manifest_out, indent=2) + "\n")
        tmp_archive = out.with_name(out.name + f".tmp{os.getpid()}")
        with tarfile.open(tmp_archive, "w:gz", compresslevel=compresslevel) as tar:
            for entry in sorted(stage.iterdir()):
                tar.add(entry, arcname=entry.name)  # model folders at the archive root
        os.replace(tmp_archive, out)
    result = Package(out, default_model, models, container_environment(default_model, explicit), python_models, loaded)
    (out.parent / CONTAINER_INFO).write_text(json.dumps(result.describe(), indent=2) + "\n")
    return result


# ---------------------------------------------------------------------------------------- CLI


def add_arguments(parser) -> None:
    parser.add_argument(
        "--repository",
        type=Path,
        default=Path("model_repository"),
        help="a repository from `searchbar build` (target triton-gpu or triton-cpu for the SageMaker "
        "container; local works too)",
    )
    parser.add_argument("--out", type=Path, default=Path("out/sagemaker/model.tar.gz"))
    parser.add_argument("--default-model", help="model /invocations serves (default: the only pipeline's entry)")
    parser.add_argument(
        "--python-env",
        default="pypi",
        help="environment of the Python-backend models: 'pypi' (pip wheels for the container's "
        f"Python {CONTAINER_PYTHON}), 'installed' (copy from this venv; same Python only), "
        "'none', or a conda-pack .tar.gz / folder",
    )
    parser.add_argument(
        "--region", default=os.environ.get("AWS_REGION", "us-east-1"), help="region for the printed image URI"
    )
    parser.add_argument("--image-tag", default=DEFAULT_IMAGE_TAG)
    parser.add_argument("--compress-level", type=int, default=6)


def run(args) -> int:
    env = None if args.python_env == "none" else args.python_env
    result = package(
        args.repository, args.out, default_model=args.default_model, python_env=env, compresslevel=args.compress_level
    )
    info = result.describe(args.region, args.image_tag)
    size = result.archive.stat().st_size / 1e6
    print(f"wrote {result.archive} ({size:.1f} MB): {', '.join(result.models)}")
    print(f"image: {info['image_uri']}  (pattern {info['image_uri_pattern']})")
    print("container environment:")
    for key, value in result.environment.items():
        print(f"  {key}={value}")
    print(f"details in {result.archive.parent / CONTAINER_INFO}; deploy with `searchbar deploy-sagemaker`")
    return 0
