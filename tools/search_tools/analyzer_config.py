"""Model Analyzer YAMLs under analyzer_configs/: presets, the latency budget, machine paths.

``analyzer_configs/<pipeline>.yaml`` is a Model Analyzer 1.46 ``profile`` config;
``analyzer_configs/presets/<preset>.yaml`` holds ``model_analyzer:`` keys merged over it and
``perf_sweep:`` settings for our own perf_analyzer stage (search_tools.sweep).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .perf import PROJECT_ROOT, perf_analyzer_binary
from .server import LOOPBACK, backend_directory, free_port, library_path, pytriton_root

ANALYZER_DIR = PROJECT_ROOT / "analyzer_configs"
PRESETS = ("quick", "full")
# Keys of a Model Analyzer config that hold paths relative to the project root.
PATH_KEYS = (
    "model_repository",
    "output_model_repository_path",
    "export_path",
    "checkpoint_directory",
    "perf_analyzer_path",
)


@dataclass
class PerfSweepSettings:
    """Our perf_analyzer stage: the load every candidate configuration gets, and its size."""

    concurrency: list[int] = field(default_factory=lambda: [1, 4, 8])
    measurement_ms: int = 2000
    queue_delays_us: list[int] = field(default_factory=lambda: [0, 1000])
    max_candidates: int = 4
    verify_rounds: int = 2
    # Model Analyzer is stopped after this long and reports what it measured (from its checkpoint).
    analyzer_time_limit_s: int = 1800
    # Used when Model Analyzer is skipped or finds nothing: applied to every composing model.
    fallback_instance_counts: list[int] = field(default_factory=lambda: [1, 2])
    fallback_max_batch_sizes: list[int] = field(default_factory=lambda: [8, 32])

    def __post_init__(self) -> None:
        """Values come from YAML presets: refuse wrong types and ranges with the key named."""

        def ints(name: str, minimum: int) -> None:
            value = getattr(self, name)
            if (
                not isinstance(value, list)
                or not value
                or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in value)
            ):
                raise ValueError(f"perf_sweep.{name} must be a non-empty list of integers >= {minimum}, got {value!r}")

        def one(name: str, minimum: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"perf_sweep.{name} must be an integer >= {minimum}, got {value!r}")

        ints("concurrency", 1)
        ints("queue_delays_us", 0)
        ints("fallback_instance_counts", 1)
        ints("fallback_max_batch_sizes", 1)
        one("measurement_ms", 100)
        one("max_candidates", 1)
        one("verify_rounds", 1)
        one("analyzer_time_limit_s", 30)


@dataclass
class AnalyzerConfig:
    pipeline: str
    preset: str
    model_analyzer: dict  # the merged Model Analyzer profile config
    perf_sweep: PerfSweepSettings

    @property
    def entry(self) -> str:
        (name,) = self.model_analyzer["profile_models"].keys()
        return name

    @property
    def budget_ms(self) -> float:
        return float(self.model_analyzer["profile_models"][self.entry]["constraints"]["perf_latency_p99"]["max"])

    @property
    def input_data(self) -> Path:
        return _abs(self.model_analyzer["profile_models"][self.entry]["perf_analyzer_flags"]["input-data"])


def _abs(path: str | Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else PROJECT_ROOT / p


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def config_path(pipeline: str) -> Path:
    return ANALYZER_DIR / f"{pipeline}.yaml"


def load(pipeline: str, preset: str = "quick") -> AnalyzerConfig:
    path = config_path(pipeline)
    if not path.exists():
        raise FileNotFoundError(f"no Model Analyzer config {path}")
    base = yaml.safe_load(path.read_text())
    overlay = yaml.safe_load((ANALYZER_DIR / "presets" / f"{preset}.yaml").read_text()) or {}
    merged = deep_merge(base, overlay.get("model_analyzer", {}))
    sweep = overlay.get("perf_sweep", {}) or {}
    unknown = set(sweep) - set(PerfSweepSettings.__dataclass_fields__)
    if unknown:
        raise ValueError(
            f"presets/{preset}.yaml: unknown perf_sweep keys {sorted(unknown)}; "
            f"known: {sorted(PerfSweepSettings.__dataclass_fields__)}"
        )
    try:
        cfg = AnalyzerConfig(pipeline, preset, merged, PerfSweepSettings(**sweep))
        budget = cfg.budget_ms
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path} + presets/{preset}.yaml: {type(exc).__name__}: {exc}") from None
    if not budget > 0:
        raise ValueError(f"{path}: constraints.perf_latency_p99.max must be a positive number of ms, got {budget!r}")
    return cfg


def resolve_for_this_machine(
    cfg: dict,
    *,
    model_repository: Path,
    export_dir: Path,
    cpu_only_composing: list[str] | None = None,
    bls_composing: list[str] | None = None,
) -> dict:
    """A copy runnable here: absolute paths, the pip tritonserver and its backend directory with the
    stub, LD_LIBRARY_PATH for the stub, and outputs under ``export_dir``."""
    out = copy.deepcopy(cfg)
    out["model_repository"] = str(Path(model_repository).resolve())
    out["export_path"] = str(export_dir)
    out["output_model_repository_path"] = str(export_dir / "output_repository")
    out["checkpoint_directory"] = str(export_dir / "checkpoints")
    out["perf_analyzer_path"] = str(perf_analyzer_binary())
    out["triton_server_path"] = str(pytriton_root() / "bin" / "tritonserver")
    out.setdefault("triton_server_flags", {})["backend_directory"] = str(backend_directory())
    # Its server on free loopback ports: a tritonserver already on 8000-8002 (ours, or one Model
    # Analyzer left behind) would otherwise stop the profile before it starts.
    out["triton_http_endpoint"] = f"{LOOPBACK}:{free_port()}"
    out["triton_grpc_endpoint"] = f"{LOOPBACK}:{free_port()}"
    out["triton_metrics_url"] = f"http://{LOOPBACK}:{free_port()}/metrics"
    out.setdefault("triton_server_environment", {})["LD_LIBRARY_PATH"] = library_path()
    for spec in out["profile_models"].values():
        flags = spec.get("perf_analyzer_flags", {})
        if "input-data" in flags:
            flags["input-data"] = str(_abs(flags["input-data"]))
    if cpu_only_composing is not None:
        out["cpu_only_composing_models"] = list(cpu_only_composing)
    if bls_composing is not None:  # only the models a BLS model really calls (none: key removed)
        out.pop("bls_composing_models", None)
        if bls_composing:
            out["bls_composing_models"] = list(bls_composing)
    return out


def write(cfg: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
