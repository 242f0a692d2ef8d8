"""`searchbar` command line: build, serve, query, doctor, demo, training, exports and the operator tools."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

# (name, module, help): each module defines ``run(args)`` and, when it takes options, ``add_arguments(parser)``.
# A two-word name is a subcommand of a group. Modules are imported only for the command that runs (or shows its
# --help), so `searchbar --help` stays fast.
COMMANDS = (
    ("build", "search_build.repository.build_command", "write the model repository (configs, tokenizers, engines)"),
    ("serve", "search_tools.serve", "serve a model repository on a local tritonserver"),
    ("hops", "search_tools.hops", "per-hop breakdown of served latency (queue, stub copies, execution, transport)"),
    ("query", "search_tools.query", "send text to a pipeline and print the result"),
    ("index", "search_tools.index", "build the catalog index catalog_search and search_bar search"),
    ("demo", "search_tools.demo", "build the default repository, serve it and query every pipeline"),
    ("doctor", "search_tools.doctor", "check that tritonserver, the Python stub and perf_analyzer run here"),
    ("eval-spell", "search_tools.spell_eval", "spell-correction quality on query<TAB>expected files, beside SymSpell"),
    (
        "sweep",
        "search_tools.sweep.command",
        "Model Analyzer + perf_analyzer sweep that picks (and --apply) a pipeline's batching",
    ),
    ("cost-report", "search_tools.cost_report", "cost per million requests from sweep results, side by side"),
    ("load-test", "search_tools.load_test", "open-loop load at a fixed rate, with p99 budgets for served and rejected"),
    ("soak", "search_tools.soak", "steady load for a bounded time while server and stub memory is sampled"),
    (
        "score",
        "search_tools.batch_scoring.command",
        "duplicate scoring of a pairs file on one machine (resumable; Triton or in-process ONNX)",
    ),
    (
        "score-spark",
        "search_tools.spark_score",
        "duplicate scoring of Parquet pairs on Spark (local[2] here, any cluster)",
    ),
    (
        "submit-spark-sagemaker",
        "search_tools.sagemaker_processing",
        "run the Spark scoring job as a SageMaker Processing job",
    ),
    (
        "package-sagemaker",
        "search_build.deploy.sagemaker_package",
        "write model.tar.gz for a SageMaker Triton endpoint",
    ),
    (
        "deploy-sagemaker",
        "search_tools.sagemaker_deploy",
        "upload model.tar.gz and create an autoscaled SageMaker endpoint",
    ),
    ("train spell", "search_build.training.spell_train", "train the spelling model (models/spell_bart)"),
    ("train reranker", "search_build.training.spell_rerank_train", "fit the spelling repair's word reranker"),
    ("train product", "search_build.training.product_train", "train the product heads (models/product_heads)"),
    ("data spell", "search_build.training.spell_data", "write the spelling held-out file, or print training pairs"),
    (
        "data lexicon",
        "search_build.training.spell_sources",
        "write the spell guard's lexicon and bigrams into a checkpoint",
    ),
    ("data perf-inputs", "search_tools.input_data", "write every pipeline's perf_analyzer input data"),
    ("export spell", "search_build.export.spell_export", "export the spelling checkpoint to ONNX (encoder + decoder)"),
    ("export product", "search_build.export.product_export", "export the product heads checkpoint to ONNX"),
)
GROUPS = {
    "train": "train the project's default models",
    "data": "write the project's seeded data files",
    "export": "export a checkpoint to ONNX",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="searchbar", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    groups: dict = {}  # group name -> its subparsers
    for name, module, summary in COMMANDS:
        *group, word = name.split()
        if group and group[0] not in groups:
            group_parser = commands.add_parser(group[0], help=GROUPS[group[0]], description=GROUPS[group[0]])
            groups[group[0]] = group_parser.add_subparsers(dest="subcommand", required=True, metavar="WHAT")
        p = (groups[group[0]] if group else commands).add_parser(word, help=summary, description=summary)
        p.set_defaults(command_module=module)
        if argv[: len(name.split())] == name.split():
            _add_arguments(p, importlib.import_module(module))
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the servers a command started (sweep, demo, soak) are stopped by
    # their context managers instead of being left running without a parent.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    result = importlib.import_module(args.command_module).run(args)
    return result if isinstance(result, int) else 0


def _add_arguments(parser: argparse.ArgumentParser, module) -> None:
    """The module's own options, and its docstring as the command's --help text."""
    if module.__doc__:
        parser.description = module.__doc__
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
    if hasattr(module, "add_arguments"):
        module.add_arguments(parser)


def run_as_main(module: str) -> None:
    """``python -m <module>``: the same as its `searchbar` command."""
    (name,) = [name for name, m, _ in COMMANDS if m == module]
    sys.exit(main([*name.split(), *sys.argv[1:]]))


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
