"""`searchbar` command line: build, serve, query, doctor, demo and the operator tools."""
from __future__ import annotations

import argparse
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

    from . import query
    p = sub.add_parser("query", help="send text to a pipeline and print the result")
    query.add_arguments(p)
    p.set_defaults(func=query.run)

    from . import demo
    p = sub.add_parser("demo", help="build the default repository, serve it and query every pipeline")
    demo.add_arguments(p)
    p.set_defaults(func=demo.run)

    from . import doctor
    p = sub.add_parser("doctor", help="check that tritonserver, the Python stub and perf_analyzer run here")
    p.set_defaults(func=doctor.run)

    args = parser.parse_args(argv)
    result = args.func(args)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
