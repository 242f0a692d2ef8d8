"""Producing model artifacts once: exports are cached by a fingerprint of their inputs."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Callable

from search_build.repository.spec import Artifact

PROJECT_ROOT = Path(__file__).resolve().parents[3]
ADAPTERS_DIR = PROJECT_ROOT / "python_backends" / "triton_models"
# Bump when an exporter changes so stale graphs are not reused.
EXPORTER_VERSION = "1"


def cache_root() -> Path:
    return Path(os.environ.get("SEARCHBAR_CACHE", PROJECT_ROOT / ".cache")) / "artifacts"


def fingerprint(*paths: str | Path, extra: str = "") -> str:
    """Content fingerprint of files/folders: path, size and head/tail bytes of every file."""
    h = hashlib.sha256(f"{EXPORTER_VERSION}|{extra}".encode())
    for root in map(Path, paths):
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for f in files:
            size = f.stat().st_size
            h.update(f"{f.relative_to(root) if root.is_dir() else f.name}|{size}".encode())
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 20))
                if size > 2 << 20:
                    fh.seek(-(1 << 20), os.SEEK_END)
                    h.update(fh.read())
    return h.hexdigest()[:20]


def _hash_file_into(h, path: Path, chunk: int = 1 << 20) -> None:
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, streamed (constant memory)."""
    h = hashlib.sha256()
    _hash_file_into(h, Path(path))
    return h.hexdigest()


def folder_sha256(folder: str | Path) -> str:
    """SHA-256 over every file of ``folder`` (relative path and bytes, sorted; caches skipped)."""
    folder = Path(folder)
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(str(path.relative_to(folder)).encode() + b"\0")
        _hash_file_into(h, path)
        h.update(b"\0")
    return h.hexdigest()


def place(src: Path, dest: Path) -> None:
    """Hard-link (cheap for 100 MB graphs) or copy a file or folder into the repository."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() or dest.is_symlink():
        shutil.rmtree(dest) if dest.is_dir() and not dest.is_symlink() else dest.unlink()
    if src.is_dir():
        shutil.copytree(src, dest, copy_function=link_or_copy)
    else:
        link_or_copy(str(src), str(dest))


def link_or_copy(src: str, dest: str) -> None:
    """Hard-link a file (no copy of 100 MB graphs), or copy it across file systems; a ``copytree`` copy_function."""
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def materialize(artifact: Artifact, dest: Path) -> Path:
    """Write ``artifact`` at ``dest``, via the cache when it has a key."""
    if artifact.cache_key is None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        artifact.build(dest)
        return dest
    cached = cache_root() / artifact.cache_key / Path(artifact.dest).name
    if not cached.exists():
        tmp = cached.with_name(cached.name + f".tmp{os.getpid()}")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        artifact.build(tmp)
        os.replace(tmp, cached)
    place(cached, dest)
    return dest


def cached_folder(name: str, build: Callable[[Path], object], done_marker: str) -> Path:
    """A folder produced once by ``build(tmp)`` and kept under the cache as ``name``.

    The folder is built beside its final place and renamed in one step, so a crash mid-export
    never leaves a half-written folder that a later build would trust.
    """
    folder = cache_root() / name
    if not (folder / done_marker).exists():
        tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        build(tmp)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    return folder


def copy_tree_files(src_dir: Path, names: list[str]):
    """An Artifact builder copying the named files of ``src_dir`` (those that exist) into a folder."""

    def build(dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        for name in names:
            if (src_dir / name).exists():
                shutil.copy2(src_dir / name, dest / name)

    return build


TOKENIZER_FILES = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "config.json",
    "generation_config.json",
]
