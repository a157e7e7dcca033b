"""The ``skad-transfer`` command (also ``python -m skad_transfer``).

Each subcommand lives in the module that owns the idea; this file only routes to them. A module
offers ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "demo": ("skad_transfer.demo", "fit ADIB and ADRA on synthetic interventions and print an AUC table"),
    "pretrain": ("skad_transfer.pretrain", "pretrain a ResNet26 theta0 on a labelled image dataset"),
    "bench": ("skad_transfer.bench.runner", "run method x protocol x class x seed benchmark grids into a result store"),
    "report": ("skad_transfer.bench.report", "paper-style tables (Markdown, CSV) and figures (PNG) of a result store"),
}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="skad-transfer", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
