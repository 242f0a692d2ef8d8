"""model_repository/ commits each model's config.pbtxt of the demo build: they must be what the specs render now.

Fast: the specs are rendered (``searchbar demo --specs-only``), nothing is exported or served.
"""

from __future__ import annotations

import difflib
import importlib.util
import re

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from search_build.repository.build_command import pipelines_for
from search_build.repository.configs import model_config, to_pbtxt
from search_build.repository.spec import Ensemble
from search_build.repository.writer import ARTIFACT_DIGEST_PARAMETER, UNBUILT_DIGEST, spec_configs
from search_tools import demo
from support.project import PROJECT_ROOT

REPOSITORY = PROJECT_ROOT / "model_repository"
FILTER_SCRIPT = PROJECT_ROOT / "scripts" / "normalise_artifact_digest.py"
REGENERATE = ".venv/bin/searchbar demo --specs-only"


def _digest_filter():
    spec = importlib.util.spec_from_file_location("normalise_artifact_digest", FILTER_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def demo_pipelines():
    pipelines, _ = pipelines_for(demo.build_args(list(demo.SHOWS), REPOSITORY))
    return pipelines


def _parsed(text: str, where: str) -> mc.ModelConfig:
    try:
        return text_format.Parse(text, mc.ModelConfig())
    except text_format.ParseError as exc:
        pytest.fail(f"{where} is not a Triton model config: {exc}")


def test_committed_configs_are_the_demo_builds(demo_pipelines):
    expected = spec_configs(demo_pipelines, "local")
    # A checkout where the demo was built holds the same configs with real digests: read them as git does.
    normalise = _digest_filter().normalise
    committed = {p.parent.name: normalise(p.read_text()) for p in sorted(REPOSITORY.glob("*/config.pbtxt"))}
    problems = [f"{name}: missing (the demo build serves it)" for name in sorted(set(expected) - set(committed))]
    problems += [
        f"{name}: committed, but the demo build has no such model" for name in sorted(set(committed) - set(expected))
    ]
    for name in sorted(set(expected) & set(committed)):
        path = f"model_repository/{name}/config.pbtxt"
        if _parsed(committed[name], path) != _parsed(expected[name], f"the spec of {name}"):
            diff = difflib.unified_diff(
                committed[name].splitlines(),
                expected[name].splitlines(),
                f"{path} (committed)",
                f"{name} (rendered from the specs)",
                lineterm="",
            )
            problems.append(f"{name}: differs from the specs\n" + "\n".join(diff))
    assert not problems, (
        f"model_repository/ is not the demo build's configs; regenerate with `{REGENERATE}`:\n" + "\n".join(problems)
    )


def test_digest_filter_reads_a_built_config_as_the_committed_one(demo_pipelines, tmp_path):
    """The writer's digest parameter, as text_format prints it, is what the git filter recognises."""
    normalise = _digest_filter().normalise
    model = next(m for p in demo_pipelines for m in p.models if not isinstance(m, Ensemble))
    built = model_config(model, "local")
    built.parameters[ARTIFACT_DIGEST_PARAMETER].string_value = "ab" * 32  # a SHA-256 as the writer records it
    built_text = to_pbtxt(built)
    committed_text = spec_configs(demo_pipelines, "local")[model.name]
    assert len(built_text) == len(committed_text)  # git compares contents only where sizes match
    assert normalise(built_text) == committed_text
    assert UNBUILT_DIGEST in committed_text and "ab" * 32 not in normalise(built_text)


def test_git_is_told_to_use_the_filter():
    attributes = (PROJECT_ROOT / ".gitattributes").read_text()
    assert re.search(r"^/model_repository/\*/config\.pbtxt filter=artifact-digest$", attributes, re.M)
    setup = (PROJECT_ROOT / "scripts" / "setup.sh").read_text()
    assert f'filter.artifact-digest.clean "$PY {FILTER_SCRIPT.relative_to(PROJECT_ROOT)}"' in setup


def test_readme_names_every_committed_model():
    readme = (REPOSITORY / "README.md").read_text()
    missing = [p.parent.name for p in REPOSITORY.glob("*/config.pbtxt") if f"`{p.parent.name}`" not in readme]
    assert not missing, f"model_repository/README.md does not describe {missing}"
