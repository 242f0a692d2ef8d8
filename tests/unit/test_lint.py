"""ruff over the whole tree (rules in pyproject.toml): unused imports, undefined names, syntax errors fail CI; mypy
over search_backends ([tool.mypy] in pyproject.toml), the same command .ci/run runs."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from support.project import PROJECT_ROOT


def test_ruff_finds_nothing():
    ruff = Path(sys.executable).parent / "ruff"
    ruff = str(ruff) if ruff.exists() else shutil.which("ruff")
    assert ruff, "ruff is a dev dependency: bash scripts/setup.sh"
    result = subprocess.run(
        [ruff, "check", "--output-format", "concise", "python_backends", "build", "tools", "tests", "benchmarks"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing():
    assert importlib.util.find_spec("mypy"), "mypy is a dev dependency: bash scripts/setup.sh"
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
