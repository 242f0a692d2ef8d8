"""One candidate measured: its configs over the base repository's files, its own tritonserver, perf_analyzer at each
concurrency level of the preset."""

from __future__ import annotations

from pathlib import Path

from search_build.repository.spec import Pipeline

from .. import analyzer_config
from ..perf import LoadPoint, run_perf_analyzer
from .candidates import render_configs


# Every load level reports the mean of 3 windows of --measurement-interval whatever their spread:
# on 2 shared cores perf_analyzer's own stability check (default 10%) rarely passes and aborts the
# level; the sweep fights noise with identical loads per candidate and alternating verify rounds.
PA_FLAGS = ("--stability-percentage", "1000", "--max-trials", "3")


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


def measure(
    pipeline: Pipeline,
    label: str,
    base_repository: Path,
    work_dir: Path,
    input_data: Path,
    settings: analyzer_config.PerfSweepSettings,
) -> list[LoadPoint]:
    from ..server import TritonServer

    repo = candidate_repository(pipeline, base_repository, work_dir / "repository")
    points = []
    with TritonServer(repo, log_path=work_dir / "tritonserver.log") as server:
        for level in settings.concurrency:
            try:
                points += run_perf_analyzer(
                    pipeline.entry,
                    server.grpc_url,
                    [level],
                    input_data,
                    measurement_ms=settings.measurement_ms,
                    label=label,
                    extra=PA_FLAGS,
                )
            except RuntimeError as exc:  # rejected / timed-out requests: this load is not servable
                reason = [ln for ln in str(exc).splitlines() if "error" in ln.lower() or "failed" in ln.lower()]
                print(f"    concurrency {level}: failed ({(reason or ['?'])[-1].strip()[:160]})", flush=True)
    return points
