"""`searchbar index build`: embed a catalog and write (or replace) catalog_search in a model repository.

Other models of the repository are left as they are. A running server picks the new index up on a reload of
catalog_search (model control API, with the admin key) or a restart.
"""

from __future__ import annotations

from pathlib import Path

from search_backends.contracts import search_bar as C


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="index_command", required=True)
    p = sub.add_parser("build", help="embed every catalog item and write the index into the model repository")
    from search_build.repository.build_command import add_catalog_arguments

    add_catalog_arguments(p)
    p.add_argument("--repository", type=Path, default=Path("model_repository"))
    p.add_argument(
        "--target",
        choices=("local", "triton-cpu", "triton-gpu"),
        default=None,
        help="default: the target the repository was built for (local for a new one)",
    )
    p.add_argument(
        "--embedding-checkpoint",
        default=None,
        help="must be the checkpoint query_embedding serves (default: all-MiniLM-L6-v2)",
    )


def run(args) -> int:
    import json

    from search_build.repository.build_command import catalog_options
    from search_build.pipelines import build_pipeline
    from search_build.repository.writer import MANIFEST_FILE, write_repository

    manifest = args.repository / MANIFEST_FILE
    target = args.target or (json.loads(manifest.read_text())["target"] if manifest.exists() else "local")
    options = {k: v for k, v in catalog_options(args).items() if v is not None}
    pipeline = build_pipeline(C.CATALOG_SEARCH, target=target, checkpoint=args.embedding_checkpoint, **options)
    write_repository([pipeline], args.repository, target, clean=False)
    folder = args.repository / C.CATALOG_SEARCH / "1" / C.CATALOG_DIR
    print(
        f"{C.CATALOG_SEARCH} written to {folder.parent.parent}: {(folder / C.MANIFEST_FILE).read_text(encoding='utf-8')}"
    )
    return 0
