"""Model Analyzer's stage of the sweep: its run (stopped when it loops), its checkpoint's results read back as
candidates."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from search_build.repository.configs import parse_pbtxt
from search_build.repository.spec import EngineModel, Pipeline

from .. import analyzer_config
from .candidates import Candidate, composing_models, describe, unique


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
    from ..server import kill_servers_serving

    export_dir.mkdir(parents=True, exist_ok=True)
    reports_cfg = reports_only_config(cfg)
    repositories = [cfg["model_repository"], cfg["output_model_repository_path"]]
    try:
        stopped = _profile(
            cfg, export_dir / "model_analyzer.yaml", export_dir / "model_analyzer.log", export_dir, log, timeout_s
        )
        if stopped:
            kill_servers_serving(repositories)  # its ports must be free for the rerun
            log(f"Model Analyzer stopped ({stopped}); writing its reports from the checkpoint")
            again = _profile(
                reports_cfg,
                export_dir / "model_analyzer_reports.yaml",
                export_dir / "model_analyzer_reports.log",
                export_dir,
                log,
                300,
            )
            if again:
                raise RuntimeError(f"model-analyzer could not write reports from its checkpoint ({again})")
    finally:
        kill_servers_serving([*repositories, reports_cfg["output_model_repository_path"]])
    return export_dir


def _profile(cfg: dict, yaml_path: Path, log_path: Path, cwd: Path, log, timeout_s: float) -> str | None:
    """One ``model-analyzer profile`` run; None when it completed, else why it was stopped."""
    import signal

    from ..server import server_env

    analyzer_config.write(cfg, yaml_path)
    log(f"model-analyzer profile -f {yaml_path}  (log: {log_path})")
    guard, started, stopped = AnalyzerLoopGuard(), time.monotonic(), None
    with open(log_path, "w") as fh:
        proc = subprocess.Popen(
            ["model-analyzer", "profile", "-f", str(yaml_path)],
            env=server_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=cwd,
            start_new_session=True,
        )
        try:
            for line in proc.stdout:
                fh.write(line)
                if "Profiling " in line or "Profile complete" in line or "error" in line.lower():
                    log(f"  MA {time.monotonic() - started:5.0f}s  {line.strip().removeprefix('[Model Analyzer] ')}")
                reason = (
                    "looping over configurations it has measured"
                    if guard.looping(line)
                    else f"past {timeout_s:.0f} s"
                    if time.monotonic() - started > timeout_s
                    else None
                )
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
    """Model Analyzer's inference CSV as rows with each composing model's batching (a Python entry's own).

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
            # An ensemble's row lists its composing variants after the colon; a Python entry (search_bar) is
            # its own one variant.
            variants = [v.strip() for v in composing.split(",") if v.strip()] or [ensemble_variant.strip()]
            counts = [
                sum(int(part.split(":")[0]) for part in group.split("/") if part)
                for group in row["Instance Group"].split(",")
            ]
            sizes = [int(v) for v in row["Max Batch Size"].split(",")]
            if not (len(variants) == len(counts) == len(sizes)):
                raise ValueError(
                    f"{csv_path}: composing models, instance groups and batch sizes do not line up "
                    f"in {row['Model Config Path']!r}"
                )
            batching = {}
            for variant, count, size in zip(variants, counts, sizes):
                model = re.sub(r"_config_(\d+|default)$", "", variant)
                batching[model] = {
                    "max_batch_size": size,
                    "instance_count": count,
                    "max_queue_delay_us": _queue_delay(
                        export_dir / "output_repository" / variant, model_repository, model
                    ),
                }
            rows.append(
                AnalyzerRow(
                    ensemble_variant.strip(),
                    int(row["Concurrency"]),
                    float(row["Throughput (infer/sec)"]),
                    float(row["p99 Latency (ms)"]),
                    row["Satisfies Constraints"].strip().lower() == "yes",
                    batching,
                )
            )
    return rows


def _queue_delay(variant_dir: Path, model_repository: Path | None, model: str) -> int:
    for folder in (variant_dir, Path(model_repository) / model if model_repository else None):
        if folder is not None and (folder / "config.pbtxt").exists():
            return parse_pbtxt((folder / "config.pbtxt").read_text()).dynamic_batching.max_queue_delay_microseconds
    raise FileNotFoundError(f"no config for {model} under {variant_dir} or {model_repository}")


def analyzer_candidates(rows: Sequence[AnalyzerRow], pipeline: Pipeline, limit: int) -> list[Candidate]:
    """Model Analyzer's best distinct composing settings: within the budget first, then throughput."""
    ranked = sorted(
        (r for r in rows if not r.ensemble_variant.endswith("_config_default")),
        key=lambda r: (r.satisfies, r.throughput),
        reverse=True,
    )
    out = []
    for r in ranked:
        b = {m: v for m, v in r.batching.items() if m in {c.name for c in composing_models(pipeline)}}
        out.append(
            Candidate(
                describe(b, pipeline.name),
                b,
                f"Model Analyzer {r.ensemble_variant} ({r.throughput:.0f}/s, p99 {r.p99_ms:.1f} ms "
                f"at concurrency {r.concurrency})",
            )
        )
    return unique(out)[:limit]
