"""The sweep's steps in order (see the package docstring): build, Model Analyzer, candidates measured, choice,
verification, reports."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from search_build.repository.spec import Pipeline

from .. import analyzer_config
from ..perf import LoadPoint, plot_latency_throughput
from .candidates import DEFAULT_NAME, Candidate, candidate_list, engine_variants, fallback_candidates
from .choose import best_under_budget, choose, verify
from .measure import measure
from .model_analyzer import (
    analyzer_candidates,
    bls_composing_models,
    cpu_only_models,
    read_model_analyzer_results,
    run_model_analyzer,
    without_queue_timeouts,
)
from .report import machine_info, summary_text, write_reports


class Progress:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[sweep {int(elapsed // 60):02d}:{int(elapsed % 60):02d}] {message}", flush=True)


def sweep(
    base: Pipeline,
    preset: str,
    *,
    out_root: Path,
    plots_dir: Path,
    use_model_analyzer: bool = True,
    queue_timeouts: bool = True,
) -> dict:
    from search_build.repository.writer import write_repository

    from ..input_data import input_data_path, write_pipeline_input_data

    log = Progress()
    if not queue_timeouts:
        base = without_queue_timeouts(base)
    cfg = analyzer_config.load(base.name, preset)
    settings, budget = cfg.perf_sweep, cfg.budget_ms
    if cfg.entry != base.entry:
        raise ValueError(
            f"{analyzer_config.config_path(base.name)} profiles {cfg.entry}, the pipeline's entry is {base.entry}"
        )
    input_data = cfg.input_data if cfg.input_data.exists() else write_pipeline_input_data(base.name)
    assert input_data == input_data_path(base.name) or input_data.exists()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(out_root) / base.name / f"{preset}-{stamp}"
    log(f"{base.name}: preset {preset}, p99 budget {budget:g} ms, outputs in {run_dir}")

    base_repo = write_repository([base], run_dir / "base_repository", "local", progress=lambda m: log(f"build {m}"))
    report: dict = {
        "pipeline": base.name,
        "entry": base.entry,
        "preset": preset,
        "budget_ms": budget,
        "stamp": stamp,
        "run_dir": str(run_dir),
        "machine": machine_info(),
        "queue_timeouts": queue_timeouts,
        "load": {
            "concurrency": settings.concurrency,
            "measurement_ms": settings.measurement_ms,
            "input_data": str(input_data),
        },
    }

    candidates: list[Candidate] = []
    # The default's own instance/batch settings get the queue-delay variants too (one slot), the rest go to
    # Model Analyzer's best settings: it never re-proposes the default and cannot vary the queue delay.
    per_setting = max(1, settings.max_candidates // max(1, len(settings.queue_delays_us)) - 1)
    if use_model_analyzer:
        export_dir = run_dir / "model_analyzer"
        ma_repo = write_repository(
            [without_queue_timeouts(base)], run_dir / "model_analyzer_repository", "local", progress=lambda m: None
        )
        ma_cfg = analyzer_config.resolve_for_this_machine(
            cfg.model_analyzer,
            model_repository=ma_repo,
            export_dir=export_dir,
            cpu_only_composing=cpu_only_models(base),
            bls_composing=bls_composing_models(base),
        )
        try:
            run_model_analyzer(ma_cfg, export_dir, log, timeout_s=settings.analyzer_time_limit_s)
            rows = read_model_analyzer_results(export_dir, ma_repo)
            candidates = analyzer_candidates(rows, base, per_setting)
            report["model_analyzer"] = {
                "export_dir": str(export_dir),
                "summary_reports": [str(p) for p in sorted((export_dir / "reports" / "summaries").rglob("*.html"))],
                "detailed_reports": [str(p) for p in sorted((export_dir / "reports" / "detailed").rglob("*.html"))],
                "rows": [r.__dict__ for r in rows],
            }
        except Exception as exc:  # noqa: BLE001 - fall back to the grid, and say so in the report
            log(f"Model Analyzer failed ({exc}); using the preset's fallback grid")
            report["model_analyzer"] = {"error": str(exc), "export_dir": str(export_dir)}
    if not candidates:
        candidates = fallback_candidates(base, settings.fallback_instance_counts, settings.fallback_max_batch_sizes)[
            :per_setting
        ]
    candidates = candidate_list(base, candidates, settings.queue_delays_us, settings.max_candidates)
    # Engine and precision are swept too, on the default batching (each variant passed the parity gate).
    candidates += engine_variants(base, base_repo, log)

    results: dict[str, list[LoadPoint]] = {}
    for i, c in enumerate(candidates):
        log(f"candidate {i + 1}/{len(candidates)}: {c.name}  [{c.source}]")
        try:
            results[c.name] = measure(
                c.pipeline(base), c.name, base_repo, run_dir / f"candidate_{i}", input_data, settings
            )
        except Exception as exc:  # noqa: BLE001 - e.g. a config tritonserver refuses; keep sweeping
            log(f"  failed: {str(exc)[:300]}")
            results[c.name] = []
        best = best_under_budget(results[c.name], budget)
        log(
            f"  best under budget: {best.throughput:.1f}/s at concurrency {best.concurrency}, p99 {best.p99_ms:.1f} ms"
            if best
            else "  nothing under the budget"
        )
    chosen_name = choose(results, budget)
    by_name = {c.name: c for c in candidates}
    report["candidates"] = [
        {
            "name": c.name,
            "source": c.source,
            "batching": c.batching,
            "points": [p.as_dict() for p in results[c.name]],
            "best": (lambda b: b.as_dict() if b else None)(best_under_budget(results[c.name], budget)),
        }
        for c in candidates
    ]
    report["chosen"] = chosen_name
    report["chosen_batching"] = by_name[chosen_name].batching if chosen_name else None
    plots_dir = Path(plots_dir)
    all_points = [p for c in candidates for p in results[c.name]]
    report["plots"] = {
        "candidates": str(
            plot_latency_throughput(
                all_points,
                plots_dir / f"{base.name}_{preset}_candidates.png",
                f"{base.name}: candidates ({preset} preset, {machine_info()['cpus']} CPUs)",
                budget,
            )
        )
    }

    if chosen_name and chosen_name != DEFAULT_NAME:
        log(f"chosen: {chosen_name}; verifying against the default")
        report["verification"] = verify(
            base, by_name[chosen_name], base_repo, run_dir, input_data, settings, budget, log
        )
        verify_points = [
            LoadPoint(**p) for r in report["verification"]["rounds"] for v in r.values() for p in v["points"]
        ]
        report["plots"]["verification"] = str(
            plot_latency_throughput(
                verify_points,
                plots_dir / f"{base.name}_{preset}_verification.png",
                f"{base.name}: default vs chosen, same load",
                budget,
            )
        )
    elif chosen_name == DEFAULT_NAME:
        log("the default configuration is the best candidate; nothing to verify")
    else:
        log(f"no candidate met the p99 budget of {budget:g} ms")

    write_reports(report, run_dir)
    print("\n" + summary_text(report))
    return report
