"""`searchbar sweep` argument handling: measure and choose, or apply an earlier sweep's choice."""

from __future__ import annotations

import json
from pathlib import Path

from search_build.repository.batching_overrides import TUNED_OVERRIDES

from .. import analyzer_config
from ..perf import PROJECT_ROOT
from .apply import apply_choice
from .candidates import DEFAULT_NAME, Candidate
from .orchestration import sweep


RESULTS_DIR = PROJECT_ROOT / "analyzer_configs" / "results"


def add_arguments(parser) -> None:
    parser.add_argument("--pipeline", required=True, help="pipeline whose serving configuration to tune")
    parser.add_argument(
        "--preset",
        choices=analyzer_config.PRESETS,
        default="quick",
        help="quick: < 10 min on 2 CPU cores; full: real hardware",
    )
    parser.add_argument(
        "--apply",
        action="store_true",
        help="write the chosen batching to --overrides and the configs into --repository",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the config diff, write nothing")
    parser.add_argument("--force", action="store_true", help="--apply even when verification shows no win")
    parser.add_argument(
        "--repository",
        type=Path,
        default=PROJECT_ROOT / "model_repository",
        help="model repository to apply the chosen configuration to",
    )
    parser.add_argument(
        "--overrides",
        type=Path,
        default=TUNED_OVERRIDES,
        help="batching overrides JSON read by `searchbar build --batching-overrides`",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=PROJECT_ROOT / "out" / "sweep",
        help="run outputs (JSON, CSV, Model Analyzer reports, server logs)",
    )
    parser.add_argument("--plots", type=Path, default=RESULTS_DIR, help="where the PNG plots go")
    parser.add_argument(
        "--skip-model-analyzer",
        action="store_true",
        help="candidates from the preset's fallback grid instead of a Model Analyzer profile",
    )
    parser.add_argument(
        "--no-queue-timeouts",
        action="store_true",
        help="measure with the spec's queue timeouts off (they are kept in what --apply writes)",
    )
    parser.add_argument(
        "--from-results", type=Path, help="apply (or --dry-run) the choice of an earlier sweep.json without measuring"
    )


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
        return apply_choice(base, Candidate(report["chosen"], report["chosen_batching"]), args, report)

    report = sweep(
        base,
        args.preset,
        out_root=args.out,
        plots_dir=args.plots,
        use_model_analyzer=not args.skip_model_analyzer,
        queue_timeouts=not args.no_queue_timeouts,
    )
    if not report["chosen_batching"] or report["chosen"] == DEFAULT_NAME:
        print("nothing to apply: the default configuration stays")
        return 0
    return apply_choice(base, Candidate(report["chosen"], report["chosen_batching"]), args, report)
