"""`searchbar` command line: build, serve, query, doctor, demo and the operator tools."""
from __future__ import annotations

import argparse
import signal
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="searchbar", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    from search_build import build_repository
    p = sub.add_parser("build", help="write the model repository (configs, tokenizers, engines)")
    build_repository.add_arguments(p)
    p.set_defaults(func=build_repository.run)

    from . import serve
    p = sub.add_parser("serve", help="serve a model repository on a local tritonserver")
    serve.add_arguments(p)
    p.set_defaults(func=serve.run)

    from . import hops
    p = sub.add_parser("hops", help="per-hop breakdown of served latency (queue, stub copies, execution, transport)")
    hops.add_arguments(p)
    p.set_defaults(func=hops.run)

    from . import query
    p = sub.add_parser("query", help="send text to a pipeline and print the result")
    query.add_arguments(p)
    p.set_defaults(func=query.run)

    from . import index
    p = sub.add_parser("index", help="build the catalog index catalog_search and search_bar search")
    index.add_arguments(p)
    p.set_defaults(func=index.run)

    from . import demo
    p = sub.add_parser("demo", help="build the default repository, serve it and query every pipeline")
    demo.add_arguments(p)
    p.set_defaults(func=demo.run)

    from . import doctor
    p = sub.add_parser("doctor", help="check that tritonserver, the Python stub and perf_analyzer run here")
    p.set_defaults(func=doctor.run)

    from . import spell_eval
    p = sub.add_parser("eval-spell", help="spell-correction quality on query<TAB>expected files, beside SymSpell")
    spell_eval.add_arguments(p)
    p.set_defaults(func=spell_eval.run)

    from . import sweep
    p = sub.add_parser("sweep", help="Model Analyzer + perf_analyzer sweep that picks (and --apply) a pipeline's batching")
    sweep.add_arguments(p)
    p.set_defaults(func=sweep.run)

    from . import cost_report
    p = sub.add_parser("cost-report", help="cost per million requests from sweep results, side by side")
    cost_report.add_arguments(p)
    p.set_defaults(func=cost_report.run)

    from . import soak
    p = sub.add_parser("soak", help="steady load for a bounded time while server and stub memory is sampled")
    soak.add_arguments(p)
    p.set_defaults(func=soak.run)

    from search_build import sagemaker_package
    p = sub.add_parser("package-sagemaker", help="write model.tar.gz for a SageMaker Triton endpoint")
    sagemaker_package.add_arguments(p)
    p.set_defaults(func=sagemaker_package.run)

    from . import sagemaker_deploy
    p = sub.add_parser("deploy-sagemaker", help="upload model.tar.gz and create an autoscaled SageMaker endpoint")
    sagemaker_deploy.add_arguments(p)
    p.set_defaults(func=sagemaker_deploy.run)

    from . import spark_score
    p = sub.add_parser("score-spark", help="duplicate scoring of Parquet pairs on Spark (local[2] here, any cluster)")
    spark_score.add_arguments(p)
    p.set_defaults(func=lambda a: spark_score.main(_spark_argv(a)))

    from . import sagemaker_processing
    p = sub.add_parser("submit-spark-sagemaker", help="run the Spark scoring job as a SageMaker Processing job")
    sagemaker_processing.add_arguments(p)
    p.set_defaults(func=sagemaker_processing.run)

    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the servers a command started (sweep, demo, soak) are stopped by
    # their context managers instead of being left running without a parent.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    result = args.func(args)
    return result if isinstance(result, int) else 0


def _spark_argv(args) -> list[str]:
    """The score-spark namespace back as spark_score's own argv (one parser, two entry points)."""
    argv = [args.input, args.output]
    for flag, value in (("--triton-url", args.triton_url), ("--onnx-dir", args.onnx_dir), ("--model", args.model),
                        ("--master", args.master), ("--batch-size", args.batch_size),
                        ("--rows-per-request", args.rows_per_request), ("--threads", args.threads),
                        ("--partitions", args.partitions)):
        if value is not None:
            argv += [flag, str(value)]
    return argv


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
