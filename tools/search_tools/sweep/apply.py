"""Writing the chosen batching: the overrides file the build reads, the repository's configs (old ones kept as
``config.pbtxt.<stamp>.bak``), and the checks against clobbering a shared model tuned for another pipeline."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Sequence

from search_build.repository.batching_overrides import TUNED_OVERRIDES, save_overrides
from search_build.repository.configs import parse_pbtxt, to_pbtxt
from search_build.repository.spec import Pipeline
from search_build.repository.writer import ARTIFACT_DIGEST_PARAMETER

from ..perf import PROJECT_ROOT
from .candidates import Candidate, describe, render_configs


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


def tuning_conflicts(
    base: Pipeline, chosen: dict[str, dict], overrides_path: str | Path, shared: dict[str, list[str]] | None = None
) -> list[str]:
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
            out.append(
                f"{model} was tuned for {', '.join(owners)} ({describe({model: {**chosen[model], **applied}}, '')}); "
                f"{base.name}'s choice is {describe({model: chosen[model]}, '')}"
            )
    return out


@dataclass
class ConfigChange:
    model: str
    path: Path
    diff: str
    backup: Path | None = None


def apply_to_repository(
    pipeline: Pipeline, repository: Path, *, dry_run: bool, stamp: str | None = None, target: str = "local"
) -> list[ConfigChange]:
    """Write ``pipeline``'s configs into an existing repository; each replaced file is kept as
    ``config.pbtxt.<stamp>.bak``. With ``dry_run`` only the diffs are computed."""
    stamp = stamp or datetime.now().strftime("%Y%m%d-%H%M%S")
    changes = []
    for name, text in render_configs(pipeline, target).items():
        path = Path(repository) / name / "config.pbtxt"
        if not path.exists():
            raise FileNotFoundError(
                f"{path} missing: build the repository first "
                f"(searchbar build --pipelines {pipeline.name} --out {repository})"
            )
        old = path.read_text()
        old_config, new_config = parse_pbtxt(old), parse_pbtxt(text)
        if ARTIFACT_DIGEST_PARAMETER in old_config.parameters:  # batching changes; the model's files do not
            new_config.parameters[ARTIFACT_DIGEST_PARAMETER].CopyFrom(old_config.parameters[ARTIFACT_DIGEST_PARAMETER])
        if old_config == new_config:
            continue
        text = to_pbtxt(new_config)
        diff = "".join(
            difflib.unified_diff(old.splitlines(True), text.splitlines(True), f"{path} (current)", f"{path} (chosen)")
        )
        change = ConfigChange(name, path, diff)
        if not dry_run:
            change.backup = path.with_name(f"config.pbtxt.{stamp}.bak")
            change.backup.write_text(old)
            path.write_text(text)
        changes.append(change)
    return changes


def apply_choice(base: Pipeline, chosen: Candidate, args, report: dict | None = None) -> int:
    dry_run = args.dry_run or not args.apply
    if (
        report is not None
        and not dry_run
        and not args.force
        and not report.get("verification", {}).get("beats_default")
    ):
        print(
            "the chosen configuration did not beat the default in every verification round: "
            "not applying (diff below; --force applies anyway)"
        )
        dry_run = True
    shared = shared_models(base, chosen.batching)
    clashes = tuning_conflicts(base, chosen.batching, args.overrides, shared)
    for clash in clashes:
        print(f"conflict: {clash}")
    if clashes and not dry_run and not args.force:
        print(
            "not applying: a shared model would lose the batching another pipeline was tuned with "
            "(--force applies anyway)"
        )
        dry_run = True
    changes = apply_to_repository(chosen.pipeline(base), args.repository, dry_run=dry_run)
    for change in changes:
        print(change.diff)
    if dry_run:
        print(
            f"{len(changes)} config(s) would change in {args.repository}"
            + ("" if args.dry_run or args.apply else "; pass --apply to write them")
        )
        return 0
    source = {"candidate": chosen.name}
    if report:
        v = report.get("verification", {})
        run_dir = Path(report.get("run_dir", ""))
        source.update(
            run=str(run_dir.relative_to(PROJECT_ROOT) if run_dir.is_relative_to(PROJECT_ROOT) else run_dir),
            preset=report.get("preset"),
            budget_ms=report.get("budget_ms"),
            cpus=report.get("machine", {}).get("cpus"),
            throughput_ratio=v.get("throughput_ratio"),
            verification_wins=f"{v.get('chosen_wins')}/{v.get('n_rounds')}" if v else None,
        )
    save_overrides(args.overrides, chosen.batching, source={args.pipeline: source})
    for model, others in shared.items():
        print(f"note: {model} is also served by {', '.join(others)}; it gets this batching there too")
    for change in changes:
        print(f"wrote {change.path} (previous kept as {change.backup.name})")
    rebuild = (
        "" if Path(args.overrides).resolve() == TUNED_OVERRIDES.resolve() else f" --batching-overrides {args.overrides}"
    )
    print(
        f"batching recorded in {args.overrides}; `searchbar build --pipelines {base.name}{rebuild}` "
        "builds the local target with it"
    )
    return 0
