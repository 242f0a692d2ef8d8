"""The project's own files, as a commit could contain them."""

from __future__ import annotations

import subprocess
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def project_files() -> list[Path]:
    """Tracked files plus untracked ones git does not ignore (what a commit could contain)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [PROJECT_ROOT / f for f in out.split("\0") if f and (PROJECT_ROOT / f).exists()]
