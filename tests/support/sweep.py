"""Pipelines and repositories the sweep tests tune."""

from __future__ import annotations

from pathlib import Path

from search_backends.contracts.query_embedding import QUERY_EMBEDDING
from search_build.pipelines import build_pipeline
from search_tools.sweep import candidates


def two_stage_query_embedding():
    """The two-stage shape (tokenizer stub + engine), as triton-cpu/gpu serve it: the sweep's mechanics need two
    models to tune; the local default fuses them (spec.FusedTokenizer)."""
    return build_pipeline(QUERY_EMBEDDING, fuse_tokenizer=False)


def repository_with_configs(pipeline, root: Path) -> Path:
    """A repository holding only the pipeline's rendered configs."""
    for name, text in candidates.render_configs(pipeline).items():
        (root / name).mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(text)
    return root
