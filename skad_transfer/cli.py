"""The ``skad-transfer`` command (also ``python -m skad_transfer``).

Each subcommand lives in the module that owns the idea; this file only routes to them. A module
offers ``add_arguments(parser)`` and ``run(args) -> int``.

Errors
------
A *user error* is one that the user fixes by changing an input: a flag value, a config file, a
dataset or checkpoint file, a result store. The package reports those as :class:`ValueError` (and
its subclasses: JSON and TOML decode errors, :class:`~skad_transfer.bench.runner.StoreError`,
scikit-learn's parameter errors), :class:`TypeError` (an argument of the wrong type),
:class:`OSError` (missing, unreadable or misplaced files: ``FileNotFoundError``,
``IsADirectoryError``, ``PermissionError``, ...) and :class:`zipfile.BadZipFile`; every message names
the flag or the file. The command prints such an error as one line,
``skad-transfer <command>: error: <message>``, on stderr and exits with status 2, as it does for a
flag that does not parse. Anything else (``RuntimeError`` from torch, ``AssertionError``, a
``KeyError``, ...) is a bug or an environment failure and keeps its full traceback. ``--debug`` (before
or after the command) or ``SKAD_TRANSFER_DEBUG=1`` shows the traceback of user errors too.

The ``type=`` helpers :func:`int_at_least` and :func:`float_in` let subcommands reject a bad number
while parsing, before any data is read.

Help texts
----------
``--help`` is read in a terminal, where reStructuredText is noise: every description and option help
passes through :func:`plain_text` (literals lose their double backticks, roles such as ``:func:`` keep
only the name), so module docstrings and help strings may use the markup the docs need.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import re
import sys
import zipfile
from collections.abc import Callable, Sequence

SUBCOMMANDS = {
    "demo": ("skad_transfer.demo", "fit ADIB and ADRA on synthetic interventions and print an AUC table"),
    "pretrain": ("skad_transfer.pretrain", "pretrain a ResNet26 theta0 on a labelled image dataset"),
    "bench": ("skad_transfer.bench.runner", "run method x protocol x class x seed benchmark grids into a result store"),
    "report": ("skad_transfer.bench.report", "paper-style tables (Markdown, CSV) and figures (PNG) of a result store"),
}

#: Exception types reported as one line with exit status 2 (see the module docstring).
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, OSError, zipfile.BadZipFile)
#: Environment variable that, set to anything but "" or "0", shows tracebacks of user errors.
DEBUG_ENV = "SKAD_TRANSFER_DEBUG"
USAGE_STATUS = 2


class _UsageError(Exception):
    """A flag that does not parse; carries the parser's prog for the one-line message."""

    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog = prog


_RST_ROLE = re.compile(r":(?:[a-z]+:)?([a-z]+):`([^`]+)`")
_RST_LITERAL = re.compile(r"``(.+?)``", re.S)
_RST_INTERPRETED = re.compile(r"(?<![`\w])`([^`]+)`(?:__?)?(?![`\w])")


def _role_text(match: re.Match) -> str:
    role, target = match.group(1), match.group(2).lstrip("!")
    titled = re.fullmatch(r"(.*?)\s*<[^<>]*>", target, re.S)
    if titled and titled.group(1):
        return titled.group(1)  # :ref:`the title <label>`, :doc:`title <page>`
    if target.startswith("~"):
        target = target[1:].rsplit(".", 1)[-1]
    return target + ("()" if role in ("func", "meth") and not target.endswith(")") else "")


def plain_text(text: str) -> str:
    """``text`` with reStructuredText inline markup taken out, as Sphinx would render it in words.

    Double-backtick literals keep their content, roles keep their name (``~`` keeps the last dotted
    part, functions and methods gain ``()``, a titled reference keeps its title) and single-backtick
    interpreted text or links keep their words. Everything else is left as it is.

    Examples
    --------
    >>> plain_text("The ``skad-transfer`` command; see :func:`~skad_transfer.cli.main` and :class:`ValueError`.")
    'The skad-transfer command; see main() and ValueError.'
    """
    text = _RST_ROLE.sub(_role_text, text)
    text = _RST_LITERAL.sub(lambda m: m.group(1), text)
    return _RST_INTERPRETED.sub(lambda m: m.group(1), text)


class _HelpFormatter(argparse.HelpFormatter):
    """Plain text (see :func:`plain_text`); every option's help ends with its default, unless it says
    it already (or has none to say)."""

    def _format_text(self, text):
        return super()._format_text(plain_text(text))

    def _get_help_string(self, action):
        text = plain_text(action.help or "")
        silent = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if "default" in text or silent or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    # argparse prints the usage block and exits; the command prints one line and returns 2, so that
    # an in-process caller (tests, notebooks) gets a status rather than SystemExit.
    def error(self, message):
        raise _UsageError(self.prog, message)


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type=`` that accepts an int >= ``minimum``.

    Examples
    --------
    >>> int_at_least(1)("3")
    3
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an int >= {minimum}, got {text!r}")
        return value

    parse.__name__ = f"int >= {minimum}"
    return parse


def float_in(low: float, high: float = math.inf, *, low_open: bool = False,
             high_open: bool = True) -> Callable[[str], float]:
    """An argparse ``type=`` that accepts a finite float in the interval from ``low`` to ``high``.

    Examples
    --------
    >>> float_in(0, low_open=True)("0.01")
    0.01
    """
    interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or (value <= low if low_open else value < low) \
                or (value >= high if high_open else value > high):
            raise argparse.ArgumentTypeError(f"expected a number in {interval}, got {text!r}")
        return value

    parse.__name__ = f"number in {interval}"
    return parse


def build_parser(commands: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``skad-transfer`` parser, with every subcommand or only ``commands``."""
    from ._version import __version__

    parser = _Parser(prog="skad-transfer", description=__doc__.splitlines()[0],
                     formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    debug_help = f"show the Python traceback of errors in the input too (or set {DEBUG_ENV}=1)"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        if commands is not None and name not in commands:
            continue
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=help_text, description=help_text,
                                    formatter_class=_HelpFormatter)
        module.add_arguments(sub)
        # SUPPRESS: a --debug before the command is not reset by the subcommand's default.
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
        sub.set_defaults(_run=module.run)
    return parser


def _one_line(prog: str, message: str) -> None:
    print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)


def main(argv: Sequence[str] | None = None, *, commands: Sequence[str] | None = None) -> int:
    """Run ``skad-transfer`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name.
    commands : sequence of str, optional
        Build only these subcommands (``python -m skad_transfer.pretrain`` routes through here).

    Returns
    -------
    status : int
        The subcommand's status; 2 for a user error (one line on stderr, see the module
        docstring). Other exceptions propagate with their traceback.
    """
    parser = build_parser(commands)
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            prog = f"skad-transfer {args.command}" if getattr(args, "command", None) else parser.prog
            raise _UsageError(prog, f"unrecognized arguments: {' '.join(extra)}")
    except _UsageError as error:
        _one_line(error.prog, str(error))
        return USAGE_STATUS
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return USAGE_STATUS
    debug = bool(getattr(args, "debug", False)) or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        return int(args._run(args) or 0)
    except USER_ERRORS as error:
        if debug:
            raise
        _one_line(f"skad-transfer {args.command}", str(error) or type(error).__name__)
        return USAGE_STATUS


if __name__ == "__main__":
    sys.exit(main())
