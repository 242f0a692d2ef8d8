"""`searchbar sweep`: pick a pipeline's serving configuration under its p99 latency budget.

1. Model Analyzer 1.46 ``profile`` (quick search, the only mode it allows for ensembles) on the
   pipeline's ensemble: max_batch_size x instance_count of every composing model.
2. Our perf_analyzer stage on the *ensemble*: the default configuration, Model Analyzer's best
   composing settings and queue-delay variants of them, each served by its own tritonserver and
   driven with the same closed-loop load (the concurrency levels of the preset).
3. The best candidate = highest throughput at any load level whose p99 stays within the budget.
4. Verification: default and chosen served again, alternately, ``verify_rounds`` times each.
5. Reports (JSON, CSV, PNG, Model Analyzer's HTML) and, with ``--apply``, the chosen batching
   written to the overrides file the build reads and to the model repository's config.pbtxt
   (old one kept as ``config.pbtxt.<stamp>.bak``); ``--dry-run`` prints the diff only.
"""
from __future__ import annotations

import csv
import difflib
import json
import os
import re
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Sequence

from search_build.batching_overrides import TUNED_OVERRIDES, apply_batching, save_overrides
from search_build.configs import model_config, parse_pbtxt, to_pbtxt
from search_build.repository import ARTIFACT_DIGEST_PARAMETER
from search_build.spec import EngineModel, Ensemble, Pipeline

from . import analyzer_config
from .perf import PROJECT_ROOT, LoadPoint, format_table, plot_latency_throughput, run_perf_analyzer

TUNED_FIELDS = ("max_batch_size", "instance_count", "max_queue_delay_us", "preferred_batch_sizes")
RESULTS_DIR = PROJECT_ROOT / "analyzer_configs" / "results"
DEFAULT_NAME = "default"
# Every load level reports the mean of 3 windows of --measurement-interval whatever their spread:
# on 2 shared cores perf_analyzer's own stability check (default 10%) rarely passes and aborts the
# level; the sweep fights noise with identical loads per candidate and alternating verify rounds.
PA_FLAGS = ("--stability-percentage", "1000", "--max-trials", "3")


# --------------------------------------------------------------------------- plain logic

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
        return {"engine": m.engine, "precision": m.precision} if isinstance(m, EngineModel) and m.follows_build_engine \
            else {}

    return {m.name: {**{f: value(m.batching, f) for f in TUNED_FIELDS}, **engine(m)} for m in composing_models(pipeline)}


def engine_variants(base: Pipeline, base_repository: Path, log=print) -> list[Candidate]:
    """The default batching on each other CPU engine and precision this machine runs and every engine model's
    build-time parity gate accepts (local target: the engine is a config parameter over the same graph)."""
    from dataclasses import replace

    from search_backends.graph_engines import ENGINE_PRECISIONS, cpu_supports_bf16, openvino_available
    from search_build.engine_parity import ParityGateError, check_parity

    engines = [m for m in composing_models(base) if isinstance(m, EngineModel) and m.follows_build_engine]
    if not engines:
        return []
    options = [(e, p) for e, ps in ENGINE_PRECISIONS.items() for p in ps
               if p != "int8" and (e != "openvino" or openvino_available()) and (p != "bf16" or cpu_supports_bf16())]
    default = tuned_batching(base)
    out = []
    for engine, precision in options:
        if all((m.engine, m.precision) == (engine, precision) for m in engines):
            continue
        try:
            for m in engines:
                graph = Path(base_repository) / m.name / "1" / "model.onnx"
                check_parity(replace(m, engine=engine, precision=precision, fallback_precision=None), graph, graph)
        except ParityGateError as exc:
            log(f"engine variant {engine} {precision}: not a candidate ({str(exc)[:200]})")
            continue
        batching = {name: {**b, "engine": engine, "precision": precision} if name in {m.name for m in engines} else b
                    for name, b in default.items()}
        out.append(Candidate(describe(batching, base.name), batching, f"default batching on {engine} {precision}"))
    return out


def describe(batching: dict[str, dict], pipeline_name: str) -> str:
    """Short label: 'tokenize x2 b16 d1000, encoder x1 b64 p4 d0' (p: preferred batch sizes)."""
    parts = []
    for model, b in batching.items():
        short = model[len(pipeline_name) + 1:] if model.startswith(pipeline_name + "_") else model
        preferred = "".join(f" p{n}" for n in b.get("preferred_batch_sizes") or ())
        engine = f" {b['engine']}-{b['precision']}" if "engine" in b else ""
        parts.append(f"{short} x{b['instance_count']} b{b['max_batch_size']}{preferred} d{b['max_queue_delay_us']}{engine}")
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


def best_under_budget(points: Sequence[LoadPoint], budget_ms: float) -> LoadPoint | None:
    ok = [p for p in points if p.p99_ms <= budget_ms]
    return max(ok, key=lambda p: p.throughput) if ok else None


def choose(results: dict[str, list[LoadPoint]], budget_ms: float) -> str | None:
    """Name of the candidate with the highest throughput under the budget (None if none meets it)."""
    scored = {name: best_under_budget(points, budget_ms) for name, points in results.items()}
    scored = {name: p for name, p in scored.items() if p is not None}
    return max(scored, key=lambda name: scored[name].throughput) if scored else None


def with_queue_delays(candidates: Sequence[Candidate], delays_us: Sequence[int], pipeline: Pipeline) -> list[Candidate]:
    """Each candidate once per queue delay (applied to every dynamically batched composing model)."""
    dynamic = {m.name for m in composing_models(pipeline) if m.batching.dynamic}
    out = []
    for c in candidates:
        for delay in delays_us:
            b = {m: {**v, "max_queue_delay_us": delay} if m in dynamic else dict(v) for m, v in c.batching.items()}
            out.append(Candidate(describe(b, pipeline.name), b, f"{c.source}, queue delay {delay} us"))
    return _unique(out)


def candidate_list(base: Pipeline, proposed: Sequence[Candidate], delays_us: Sequence[int],
                   max_candidates: int) -> list[Candidate]:
    """The default first, then queue-delay variants of the default's own settings and of ``proposed``
    (Model Analyzer's best or the fallback grid), at most ``max_candidates`` besides the default."""
    default = Candidate(DEFAULT_NAME, tuned_batching(base), "spec defaults")
    variants = with_queue_delays([Candidate(DEFAULT_NAME, default.batching, "default settings"),
                                  *(keep_request_rows(c, base) for c in proposed)], delays_us, base)
    return [default, *[c for c in variants if c.batching != default.batching][:max_candidates]]


def _unique(candidates: Sequence[Candidate]) -> list[Candidate]:
    seen, out = set(), []
    for c in candidates:
        key = json.dumps(c.batching, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def fallback_candidates(pipeline: Pipeline, instance_counts: Sequence[int], max_batch_sizes: Sequence[int]) -> list[Candidate]:
    """A uniform grid over every composing model (when Model Analyzer is skipped or fails)."""
    base = tuned_batching(pipeline)
    out = []
    for count in instance_counts:
        for mbs in max_batch_sizes:
            b = {m: {**v, "instance_count": count, "max_batch_size": mbs} for m, v in base.items()}
            out.append(Candidate(describe(b, pipeline.name), b, f"grid x{count} b{mbs}"))
    return out


def shared_models(base: Pipeline, models: Sequence[str]) -> dict[str, list[str]]:
    """Which of ``models`` other registered pipelines also serve (one config per model name).

    A pipeline that contains the whole of ``base`` (search_bar holds every stage pipeline) is not counted: it
    calls ``base`` as a stage, so tuning ``base`` is tuning that stage of it."""
    from search_build.pipelines import build_pipeline, pipeline_names

    out: dict[str, list[str]] = {}
    own = {m.name for m in base.models}
    for name in pipeline_names():
        if name == base.name:
            continue
        names = {m.name for m in build_pipeline(name).models}
        if own <= names:
            continue
        for m in names & set(models):
            out.setdefault(m, []).append(name)
    return out


def tuning_conflicts(base: Pipeline, chosen: dict[str, dict], overrides_path: str | Path,
                     shared: dict[str, list[str]] | None = None) -> list[str]:
    """Shared models whose applied batching, tuned for another pipeline, ``chosen`` would change.

    One config serves every pipeline that uses a model (product_encoder: real-time query_intent and
    offline product_duplicate), so the last --apply would silently win.
    """
    path = Path(overrides_path)
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    tuned_by = [name for name in data.get("sources", {}) if name != base.name]
    out = []
    for model, others in (shared if shared is not None else shared_models(base, chosen)).items():
        owners = [o for o in others if o in tuned_by]
        applied = data.get("models", {}).get(model)
        if owners and applied is not None and any(applied.get(k) != v for k, v in chosen[model].items()):
            out.append(f"{model} was tuned for {', '.join(owners)} ({describe({model: {**chosen[model], **applied}}, '')}); "
                       f"{base.name}'s choice is {describe({model: chosen[model]}, '')}")
    return out


def render_configs(pipeline: Pipeline, target: str = "local") -> dict[str, str]:
    return {m.name: to_pbtxt(model_config(m, target)) for m in pipeline.models}


@dataclass
class ConfigChange:
    model: str
    path: Path
    diff: str
    backup: Path | None = None


def apply_to_repository(pipeline: Pipeline, repository: Path, *, dry_run: bool, stamp: str | None = None,
                        target: str = "local") -> list[ConfigChange]:
    """Write ``pipeline``'s configs into an existing repository; each replaced file is kept as
    ``config.pbtxt.<stamp>.bak``. With ``dry_run`` only the diffs are computed."""
    stamp = stamp or datetime.now().strftime("%Y%m%d-%H%M%S")
    changes = []
    for name, text in render_configs(pipeline, target).items():
        path = Path(repository) / name / "config.pbtxt"
        if not path.exists():
            raise FileNotFoundError(f"{path} missing: build the repository first "
                                    f"(searchbar build --pipelines {pipeline.name} --out {repository})")
        old = path.read_text()
        old_config, new_config = parse_pbtxt(old), parse_pbtxt(text)
        if ARTIFACT_DIGEST_PARAMETER in old_config.parameters:  # batching changes; the model's files do not
            new_config.parameters[ARTIFACT_DIGEST_PARAMETER].CopyFrom(old_config.parameters[ARTIFACT_DIGEST_PARAMETER])
        if old_config == new_config:
            continue
        text = to_pbtxt(new_config)
        diff = "".join(difflib.unified_diff(old.splitlines(True), text.splitlines(True),
                                            f"{path} (current)", f"{path} (chosen)"))
        change = ConfigChange(name, path, diff)
        if not dry_run:
            change.backup = path.with_name(f"config.pbtxt.{stamp}.bak")
            change.backup.write_text(old)
            path.write_text(text)
        changes.append(change)
    return changes


# --------------------------------------------------------------------------- Model Analyzer

def cpu_only_models(pipeline: Pipeline, target: str = "local") -> list[str]:
    """Python models (tokenizers, heads, BLS loops) always; engines too where they run on CPU."""
    return [m.name for m in composing_models(pipeline) if not isinstance(m, EngineModel) or target != "triton-gpu"]


def bls_composing_models(pipeline: Pipeline) -> list[str]:
    """Models that a Python model of the pipeline calls through BLS (e.g. spell_generate with
    engine_mode="bls"); empty when everything runs in process."""
    return sorted({callee for m in composing_models(pipeline) for callee in getattr(m, "bls_calls", ())})


def without_queue_timeouts(pipeline: Pipeline) -> Pipeline:
    """The pipeline with queue timeouts off, for Model Analyzer's stage only: it sends no warm-up,
    the first requests after each model load outlast a 250 ms queue timeout, and it aborts after
    two failed measurements. Our perf_analyzer stage serves the real policy."""
    from dataclasses import replace

    for m in composing_models(pipeline):
        if m.batching.queue_timeout_us:
            pipeline = pipeline.with_batching(m.name, replace(m.batching, queue_timeout_us=0))
    return pipeline


# Model Analyzer 1.46's quick search can cycle forever over configurations it has measured already
# (its hill climber steps back and forth; "Existing measurement found ... Skipping profile" without
# end, 3,000 lines in 5 minutes here). After this many in a row it is stopped and its reports are
# written from the checkpoint, which holds every measurement it took.
MA_LOOP_LIMIT = 30
MA_SKIP_LINE = "Existing measurement found for run config"


class AnalyzerLoopGuard:
    """Fed Model Analyzer's output line by line; says when it is only revisiting measured configs."""

    def __init__(self, limit: int = MA_LOOP_LIMIT) -> None:
        self.limit, self.skipped = limit, 0

    def looping(self, line: str) -> bool:
        if "Profiling " in line:
            self.skipped = 0
        elif MA_SKIP_LINE in line:
            self.skipped += 1
        return self.skipped >= self.limit


def reports_only_config(cfg: dict) -> dict:
    """``cfg`` narrowed to a one-point search (the point quick search measures first), so a rerun
    on the same checkpoint measures nothing new and writes the reports over every measurement.
    Its variant configs go to a separate folder: the profile's own are read back afterwards."""
    import copy

    out = copy.deepcopy(cfg)
    out["run_config_search_max_instance_count"] = out.get("run_config_search_min_instance_count", 1)
    out["run_config_search_max_model_batch_size"] = out.get("run_config_search_min_model_batch_size", 1)
    out["output_model_repository_path"] = str(out["output_model_repository_path"]) + "_reports"
    out["override_output_model_repository"] = True
    return out


def run_model_analyzer(cfg: dict, export_dir: Path, log, *, timeout_s: float = 1800) -> Path:
    """``model-analyzer profile -f`` with the resolved config; its output streams to ``log``.

    Stopped gracefully (SIGINT: it saves its checkpoint) when it loops or runs past ``timeout_s``;
    the reports then come from the checkpoint. Servers it leaves behind are stopped either way."""
    from .server import kill_servers_serving

    export_dir.mkdir(parents=True, exist_ok=True)
    reports_cfg = reports_only_config(cfg)
    repositories = [cfg["model_repository"], cfg["output_model_repository_path"]]
    try:
        stopped = _profile(cfg, export_dir / "model_analyzer.yaml", export_dir / "model_analyzer.log", export_dir,
                           log, timeout_s)
        if stopped:
            kill_servers_serving(repositories)  # its ports must be free for the rerun
            log(f"Model Analyzer stopped ({stopped}); writing its reports from the checkpoint")
            again = _profile(reports_cfg, export_dir / "model_analyzer_reports.yaml",
                             export_dir / "model_analyzer_reports.log", export_dir, log, 300)
            if again:
                raise RuntimeError(f"model-analyzer could not write reports from its checkpoint ({again})")
    finally:
        kill_servers_serving([*repositories, reports_cfg["output_model_repository_path"]])
    return export_dir


def _profile(cfg: dict, yaml_path: Path, log_path: Path, cwd: Path, log, timeout_s: float) -> str | None:
    """One ``model-analyzer profile`` run; None when it completed, else why it was stopped."""
    import signal

    from .server import server_env

    analyzer_config.write(cfg, yaml_path)
    log(f"model-analyzer profile -f {yaml_path}  (log: {log_path})")
    guard, started, stopped = AnalyzerLoopGuard(), time.monotonic(), None
    with open(log_path, "w") as fh:
        proc = subprocess.Popen(["model-analyzer", "profile", "-f", str(yaml_path)], env=server_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd,
                                start_new_session=True)
        try:
            for line in proc.stdout:
                fh.write(line)
                if "Profiling " in line or "Profile complete" in line or "error" in line.lower():
                    log(f"  MA {time.monotonic() - started:5.0f}s  {line.strip().removeprefix('[Model Analyzer] ')}")
                reason = ("looping over configurations it has measured" if guard.looping(line) else
                          f"past {timeout_s:.0f} s" if time.monotonic() - started > timeout_s else None)
                if reason and not stopped:
                    stopped, stop_sent = reason, time.monotonic()
                    proc.send_signal(signal.SIGINT)  # it finishes the current step and saves its checkpoint
                elif stopped and time.monotonic() - stop_sent > 60:
                    break  # ignored SIGINT: killed below
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    if stopped:
        return stopped
    if proc.returncode != 0:
        raise RuntimeError(f"model-analyzer exited with {proc.returncode}; see {log_path}")
    return None


@dataclass
class AnalyzerRow:
    ensemble_variant: str
    concurrency: int
    throughput: float
    p99_ms: float
    satisfies: bool
    batching: dict[str, dict]


def read_model_analyzer_results(export_dir: Path, model_repository: Path | None = None) -> list[AnalyzerRow]:
    """Model Analyzer's inference CSV as rows with each composing model's batching.

    Instances and max batch size come from the CSV itself. The queue delay, which quick search
    leaves at each model's own, comes from the variant config Model Analyzer wrote under
    output_repository, or from ``model_repository`` (its input) where the variant is gone: a later
    profile on the same export folder starts by clearing output_repository.
    """
    csv_path = export_dir / "results" / "metrics-model-inference.csv"
    rows = []
    with open(csv_path) as fh:
        for row in csv.DictReader(fh):
            ensemble_variant, _, composing = row["Model Config Path"].partition(":")
            variants = [v.strip() for v in composing.split(",") if v.strip()]
            counts = [sum(int(part.split(":")[0]) for part in group.split("/") if part)
                      for group in row["Instance Group"].split(",")]
            sizes = [int(v) for v in row["Max Batch Size"].split(",")]
            if not (len(variants) == len(counts) == len(sizes)):
                raise ValueError(f"{csv_path}: composing models, instance groups and batch sizes do not line up "
                                 f"in {row['Model Config Path']!r}")
            batching = {}
            for variant, count, size in zip(variants, counts, sizes):
                model = re.sub(r"_config_(\d+|default)$", "", variant)
                batching[model] = {"max_batch_size": size, "instance_count": count,
                                   "max_queue_delay_us": _queue_delay(export_dir / "output_repository" / variant,
                                                                      model_repository, model)}
            rows.append(AnalyzerRow(ensemble_variant.strip(), int(row["Concurrency"]),
                                    float(row["Throughput (infer/sec)"]), float(row["p99 Latency (ms)"]),
                                    row["Satisfies Constraints"].strip().lower() == "yes", batching))
    return rows


def _queue_delay(variant_dir: Path, model_repository: Path | None, model: str) -> int:
    for folder in (variant_dir, Path(model_repository) / model if model_repository else None):
        if folder is not None and (folder / "config.pbtxt").exists():
            return parse_pbtxt((folder / "config.pbtxt").read_text()).dynamic_batching.max_queue_delay_microseconds
    raise FileNotFoundError(f"no config for {model} under {variant_dir} or {model_repository}")


def analyzer_candidates(rows: Sequence[AnalyzerRow], pipeline: Pipeline, limit: int) -> list[Candidate]:
    """Model Analyzer's best distinct composing settings: within the budget first, then throughput."""
    ranked = sorted((r for r in rows if not r.ensemble_variant.endswith("_config_default")),
                    key=lambda r: (r.satisfies, r.throughput), reverse=True)
    out = []
    for r in ranked:
        b = {m: v for m, v in r.batching.items() if m in {c.name for c in composing_models(pipeline)}}
        out.append(Candidate(describe(b, pipeline.name), b,
                             f"Model Analyzer {r.ensemble_variant} ({r.throughput:.0f}/s, p99 {r.p99_ms:.1f} ms "
                             f"at concurrency {r.concurrency})"))
    return _unique(out)[:limit]


# --------------------------------------------------------------------------- measuring

def candidate_repository(pipeline: Pipeline, base_repository: Path, dest: Path) -> Path:
    """A repository with ``pipeline``'s configs whose version folders link to ``base_repository``'s."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, text in render_configs(pipeline).items():
        model_dir = dest / name
        model_dir.mkdir(exist_ok=True)
        (model_dir / "config.pbtxt").write_text(text)
        link = model_dir / "1"
        if not link.exists():
            link.symlink_to((Path(base_repository) / name / "1").resolve(), target_is_directory=True)
    return dest


def measure(pipeline: Pipeline, label: str, base_repository: Path, work_dir: Path, input_data: Path,
            settings: analyzer_config.PerfSweepSettings) -> list[LoadPoint]:
    from .server import TritonServer

    repo = candidate_repository(pipeline, base_repository, work_dir / "repository")
    points = []
    with TritonServer(repo, log_path=work_dir / "tritonserver.log") as server:
        for level in settings.concurrency:
            try:
                points += run_perf_analyzer(pipeline.entry, server.grpc_url, [level], input_data,
                                            measurement_ms=settings.measurement_ms, label=label, extra=PA_FLAGS)
            except RuntimeError as exc:  # rejected / timed-out requests: this load is not servable
                reason = [ln for ln in str(exc).splitlines() if "error" in ln.lower() or "failed" in ln.lower()]
                print(f"    concurrency {level}: failed ({(reason or ['?'])[-1].strip()[:160]})", flush=True)
    return points


def verify(base: Pipeline, chosen: Candidate, base_repository: Path, work_dir: Path, input_data: Path,
           settings: analyzer_config.PerfSweepSettings, budget_ms: float, log) -> dict:
    """Default and chosen served alternately ``verify_rounds`` times under the same load."""
    rounds = []
    configs = {DEFAULT_NAME: base, "chosen": chosen.pipeline(base)}
    for r in range(settings.verify_rounds):
        order = list(configs) if r % 2 == 0 else list(reversed(configs))
        entry = {}
        for name in order:
            log(f"verify round {r + 1}/{settings.verify_rounds}: {name}")
            points = measure(configs[name], f"{name} (round {r + 1})", base_repository,
                             work_dir / f"verify_{r}_{name}", input_data, settings)
            best = best_under_budget(points, budget_ms)
            entry[name] = {"points": [p.as_dict() for p in points], "best": best.as_dict() if best else None}
        rounds.append(entry)

    def median_best(name: str, key: str) -> float | None:
        vals = [r[name]["best"][key] for r in rounds if r[name]["best"]]
        return statistics.median(vals) if vals else None

    def throughput(r: dict, name: str) -> float:
        return r[name]["best"]["throughput"] if r[name]["best"] else 0.0

    wins = sum(throughput(r, "chosen") > throughput(r, DEFAULT_NAME) for r in rounds)
    summary = {name: {"throughput": median_best(name, "throughput"), "p99_ms": median_best(name, "p99_ms"),
                      "concurrency": median_best(name, "concurrency")} for name in configs}
    d, c = summary[DEFAULT_NAME]["throughput"], summary["chosen"]["throughput"]
    return {"rounds": rounds, "summary": summary, "chosen_wins": wins, "n_rounds": len(rounds),
            "throughput_ratio": (c / d) if c and d else None,
            "beats_default": bool(c) and wins == len(rounds) and (not d or c > d)}


# --------------------------------------------------------------------------- the command

class Progress:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[sweep {int(elapsed // 60):02d}:{int(elapsed % 60):02d}] {message}", flush=True)


def add_arguments(parser) -> None:
    parser.add_argument("--pipeline", required=True, help="pipeline whose serving configuration to tune")
    parser.add_argument("--preset", choices=analyzer_config.PRESETS, default="quick",
                        help="quick: < 10 min on 2 CPU cores; full: real hardware")
    parser.add_argument("--apply", action="store_true",
                        help="write the chosen batching to --overrides and the configs into --repository")
    parser.add_argument("--dry-run", action="store_true", help="print the config diff, write nothing")
    parser.add_argument("--force", action="store_true", help="--apply even when verification shows no win")
    parser.add_argument("--repository", type=Path, default=PROJECT_ROOT / "model_repository",
                        help="model repository to apply the chosen configuration to")
    parser.add_argument("--overrides", type=Path, default=TUNED_OVERRIDES,
                        help="batching overrides JSON read by `searchbar build --batching-overrides`")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "out" / "sweep",
                        help="run outputs (JSON, CSV, Model Analyzer reports, server logs)")
    parser.add_argument("--plots", type=Path, default=RESULTS_DIR, help="where the PNG plots go")
    parser.add_argument("--skip-model-analyzer", action="store_true",
                        help="candidates from the preset's fallback grid instead of a Model Analyzer profile")
    parser.add_argument("--no-queue-timeouts", action="store_true",
                        help="measure with the spec's queue timeouts off (they are kept in what --apply writes)")
    parser.add_argument("--from-results", type=Path,
                        help="apply (or --dry-run) the choice of an earlier sweep.json without measuring")


def run(args) -> int:
    from search_build.pipelines import build_pipeline, pipeline_names

    if args.pipeline not in pipeline_names():
        print(f"pipeline {args.pipeline!r} is not registered yet (known: {', '.join(pipeline_names())})")
        return 2
    base = build_pipeline(args.pipeline)
    if args.from_results:
        report = json.loads(Path(args.from_results).read_text())
        if not report.get("chosen_batching") or report.get("chosen") == DEFAULT_NAME:
            print(f"{args.from_results}: no configuration beat the default under the budget; nothing to apply")
            return 1
        return _apply(base, Candidate(report["chosen"], report["chosen_batching"]), args, report)

    report = sweep(base, args.preset, out_root=args.out, plots_dir=args.plots,
                   use_model_analyzer=not args.skip_model_analyzer, queue_timeouts=not args.no_queue_timeouts)
    if not report["chosen_batching"] or report["chosen"] == DEFAULT_NAME:
        print("nothing to apply: the default configuration stays")
        return 0
    return _apply(base, Candidate(report["chosen"], report["chosen_batching"]), args, report)


def _apply(base: Pipeline, chosen: Candidate, args, report: dict | None = None) -> int:
    dry_run = args.dry_run or not args.apply
    if report is not None and not dry_run and not args.force and not report.get("verification", {}).get("beats_default"):
        print("the chosen configuration did not beat the default in every verification round: "
              "not applying (diff below; --force applies anyway)")
        dry_run = True
    shared = shared_models(base, chosen.batching)
    clashes = tuning_conflicts(base, chosen.batching, args.overrides, shared)
    for clash in clashes:
        print(f"conflict: {clash}")
    if clashes and not dry_run and not args.force:
        print("not applying: a shared model would lose the batching another pipeline was tuned with "
              "(--force applies anyway)")
        dry_run = True
    changes = apply_to_repository(chosen.pipeline(base), args.repository, dry_run=dry_run)
    for change in changes:
        print(change.diff)
    if dry_run:
        print(f"{len(changes)} config(s) would change in {args.repository}"
              + ("" if args.dry_run or args.apply else "; pass --apply to write them"))
        return 0
    source = {"candidate": chosen.name}
    if report:
        v = report.get("verification", {})
        run_dir = Path(report.get("run_dir", ""))
        source.update(run=str(run_dir.relative_to(PROJECT_ROOT) if run_dir.is_relative_to(PROJECT_ROOT) else run_dir),
                      preset=report.get("preset"), budget_ms=report.get("budget_ms"),
                      cpus=report.get("machine", {}).get("cpus"), throughput_ratio=v.get("throughput_ratio"),
                      verification_wins=f"{v.get('chosen_wins')}/{v.get('n_rounds')}" if v else None)
    save_overrides(args.overrides, chosen.batching, source={args.pipeline: source})
    for model, others in shared.items():
        print(f"note: {model} is also served by {', '.join(others)}; it gets this batching there too")
    for change in changes:
        print(f"wrote {change.path} (previous kept as {change.backup.name})")
    rebuild = ("" if Path(args.overrides).resolve() == TUNED_OVERRIDES.resolve()
               else f" --batching-overrides {args.overrides}")
    print(f"batching recorded in {args.overrides}; `searchbar build --pipelines {base.name}{rebuild}` "
          "builds the local target with it")
    return 0


def sweep(base: Pipeline, preset: str, *, out_root: Path, plots_dir: Path, use_model_analyzer: bool = True,
          queue_timeouts: bool = True) -> dict:
    from search_build.repository import write_repository

    from .input_data import input_data_path, write_pipeline_input_data

    log = Progress()
    if not queue_timeouts:
        base = without_queue_timeouts(base)
    cfg = analyzer_config.load(base.name, preset)
    settings, budget = cfg.perf_sweep, cfg.budget_ms
    if cfg.entry != base.entry:
        raise ValueError(f"{analyzer_config.config_path(base.name)} profiles {cfg.entry}, the pipeline's entry is {base.entry}")
    input_data = cfg.input_data if cfg.input_data.exists() else write_pipeline_input_data(base.name)
    assert input_data == input_data_path(base.name) or input_data.exists()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(out_root) / base.name / f"{preset}-{stamp}"
    log(f"{base.name}: preset {preset}, p99 budget {budget:g} ms, outputs in {run_dir}")

    base_repo = write_repository([base], run_dir / "base_repository", "local", progress=lambda m: log(f"build {m}"))
    report: dict = {"pipeline": base.name, "entry": base.entry, "preset": preset, "budget_ms": budget,
                    "stamp": stamp, "run_dir": str(run_dir), "machine": _machine(), "queue_timeouts": queue_timeouts,
                    "load": {"concurrency": settings.concurrency, "measurement_ms": settings.measurement_ms,
                             "input_data": str(input_data)}}

    candidates: list[Candidate] = []
    # The default's own instance/batch settings get the queue-delay variants too (one slot), the rest go to
    # Model Analyzer's best settings: it never re-proposes the default and cannot vary the queue delay.
    per_setting = max(1, settings.max_candidates // max(1, len(settings.queue_delays_us)) - 1)
    if use_model_analyzer:
        export_dir = run_dir / "model_analyzer"
        ma_repo = write_repository([without_queue_timeouts(base)], run_dir / "model_analyzer_repository", "local",
                                   progress=lambda m: None)
        ma_cfg = analyzer_config.resolve_for_this_machine(cfg.model_analyzer, model_repository=ma_repo,
                                                          export_dir=export_dir, cpu_only_composing=cpu_only_models(base),
                                                          bls_composing=bls_composing_models(base))
        try:
            run_model_analyzer(ma_cfg, export_dir, log, timeout_s=settings.analyzer_time_limit_s)
            rows = read_model_analyzer_results(export_dir, ma_repo)
            candidates = analyzer_candidates(rows, base, per_setting)
            report["model_analyzer"] = {
                "export_dir": str(export_dir),
                "summary_reports": [str(p) for p in sorted((export_dir / "reports" / "summaries").rglob("*.html"))],
                "detailed_reports": [str(p) for p in sorted((export_dir / "reports" / "detailed").rglob("*.html"))],
                "rows": [r.__dict__ for r in rows]}
        except Exception as exc:  # noqa: BLE001 - fall back to the grid, and say so in the report
            log(f"Model Analyzer failed ({exc}); using the preset's fallback grid")
            report["model_analyzer"] = {"error": str(exc), "export_dir": str(export_dir)}
    if not candidates:
        candidates = fallback_candidates(base, settings.fallback_instance_counts,
                                         settings.fallback_max_batch_sizes)[:per_setting]
    candidates = candidate_list(base, candidates, settings.queue_delays_us, settings.max_candidates)
    # Engine and precision are swept too, on the default batching (each variant passed the parity gate).
    candidates += engine_variants(base, base_repo, log)

    results: dict[str, list[LoadPoint]] = {}
    for i, c in enumerate(candidates):
        log(f"candidate {i + 1}/{len(candidates)}: {c.name}  [{c.source}]")
        try:
            results[c.name] = measure(c.pipeline(base), c.name, base_repo, run_dir / f"candidate_{i}", input_data, settings)
        except Exception as exc:  # noqa: BLE001 - e.g. a config tritonserver refuses; keep sweeping
            log(f"  failed: {str(exc)[:300]}")
            results[c.name] = []
        best = best_under_budget(results[c.name], budget)
        log(f"  best under budget: {best.throughput:.1f}/s at concurrency {best.concurrency}, p99 {best.p99_ms:.1f} ms"
            if best else "  nothing under the budget")
    chosen_name = choose(results, budget)
    by_name = {c.name: c for c in candidates}
    report["candidates"] = [{"name": c.name, "source": c.source, "batching": c.batching,
                             "points": [p.as_dict() for p in results[c.name]],
                             "best": (lambda b: b.as_dict() if b else None)(best_under_budget(results[c.name], budget))}
                            for c in candidates]
    report["chosen"] = chosen_name
    report["chosen_batching"] = by_name[chosen_name].batching if chosen_name else None
    plots_dir = Path(plots_dir)
    all_points = [p for c in candidates for p in results[c.name]]
    report["plots"] = {"candidates": str(plot_latency_throughput(
        all_points, plots_dir / f"{base.name}_{preset}_candidates.png",
        f"{base.name}: candidates ({preset} preset, {_machine()['cpus']} CPUs)", budget))}

    if chosen_name and chosen_name != DEFAULT_NAME:
        log(f"chosen: {chosen_name}; verifying against the default")
        report["verification"] = verify(base, by_name[chosen_name], base_repo, run_dir, input_data, settings, budget, log)
        verify_points = [LoadPoint(**p) for r in report["verification"]["rounds"] for v in r.values() for p in v["points"]]
        report["plots"]["verification"] = str(plot_latency_throughput(
            verify_points, plots_dir / f"{base.name}_{preset}_verification.png",
            f"{base.name}: default vs chosen, same load", budget))
    elif chosen_name == DEFAULT_NAME:
        log("the default configuration is the best candidate; nothing to verify")
    else:
        log(f"no candidate met the p99 budget of {budget:g} ms")

    _write_reports(report, run_dir)
    print("\n" + summary_text(report))
    return report


def _machine() -> dict:
    import platform

    return {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_1m": os.getloadavg()[0]}


def _write_reports(report: dict, run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "sweep.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    with open(run_dir / "sweep.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["stage", "config", "concurrency", "throughput", "p50_ms", "p90_ms", "p99_ms", "within_budget"])
        for c in report["candidates"]:
            for p in c["points"]:
                w.writerow(["sweep", c["name"], p["concurrency"], f"{p['throughput']:.2f}", f"{p['p50_ms']:.2f}",
                            f"{p['p90_ms']:.2f}", f"{p['p99_ms']:.2f}", p["p99_ms"] <= report["budget_ms"]])
        for i, r in enumerate(report.get("verification", {}).get("rounds", [])):
            for name, v in r.items():
                for p in v["points"]:
                    w.writerow([f"verify{i + 1}", name, p["concurrency"], f"{p['throughput']:.2f}", f"{p['p50_ms']:.2f}",
                                f"{p['p90_ms']:.2f}", f"{p['p99_ms']:.2f}", p["p99_ms"] <= report["budget_ms"]])
    print(f"wrote {run_dir / 'sweep.json'} and {run_dir / 'sweep.csv'}")


def summary_text(report: dict) -> str:
    lines = [f"{report['pipeline']} ({report['preset']} preset), p99 budget {report['budget_ms']:g} ms, "
             f"load: concurrency {report['load']['concurrency']}"]
    points = [LoadPoint(**p) for c in report["candidates"] for p in c["points"]]
    lines.append(format_table(points))
    lines.append(f"chosen: {report['chosen'] or 'none (no candidate met the budget)'}")
    v = report.get("verification")
    if v:
        d, c = v["summary"][DEFAULT_NAME], v["summary"]["chosen"]
        fmt = lambda s: (f"{s['throughput']:.1f}/s, p99 {s['p99_ms']:.1f} ms"  # noqa: E731
                         if s["throughput"] else "nothing under budget")
        lines.append(f"verification ({v['n_rounds']} alternating rounds, median best under budget): "
                     f"default {fmt(d)}; chosen {fmt(c)}; chosen won {v['chosen_wins']}/{v['n_rounds']} rounds"
                     + (f"; x{v['throughput_ratio']:.2f}" if v["throughput_ratio"] else "")
                     + ("" if v["beats_default"] else "  -> NOT a measurable win"))
    for name, path in report.get("plots", {}).items():
        lines.append(f"plot ({name}): {path}")
    return "\n".join(lines)
