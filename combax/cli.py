"""The ``combax`` command: solve problems from files, run the end-to-end pipelines, run the demo."""

import argparse
import importlib
import pkgutil
import sys

from combax import __version__


def command_modules() -> list:
    """Every module of :mod:`combax.commands`, sorted by name."""
    import combax.commands as pkg

    names = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))
    return [importlib.import_module(f"combax.commands.{name}") for name in names]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="combax",
        description="Exact combinatorial solvers inside deep learning.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("version", help="print the combax version")
    p.set_defaults(func=lambda args: print(f"combax {__version__}"))

    p = sub.add_parser("demo", help="a tour of every finished capability on bundled data (writes demo_out/)")
    p.add_argument("--out", default="demo_out", help="folder for plots and the results table (default: demo_out)")
    p.add_argument("--only", nargs="*", default=None, help="run only these steps (by name)")
    p.set_defaults(func=_run_demo)

    for module in command_modules():
        module.register(sub)
    return parser


def _run_demo(args) -> None:
    from combax.demo import run_demo

    run_demo(args.out, only=args.only)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
