import subprocess
import sys

from skad_transfer.cli import main


def test_help_lists_subcommands(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert "demo" in out and "pretrain" in out


def test_demo_tiny_run_prints_the_table_and_writes_the_chart(tmp_path):
    png = tmp_path / "demo.png"
    done = subprocess.run(
        [sys.executable, "-m", "skad_transfer", "demo", "--weights", "none", "--n-normal", "32", "--n-outlier", "32",
         "--n-test", "20", "--epochs", "1", "--output", str(png), "--quiet"],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for label in ("ADIB", "ADRA", "ADIB, random init", "ADIB, no regularizer", "color->blue", "size->large"):
        assert label in done.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_option_of_every_subcommand_has_help_and_outputs_are_named_alike():
    import argparse

    from skad_transfer.cli import build_parser

    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            assert action.help, f"skad-transfer {name} {'/'.join(action.option_strings) or action.dest}: no help"
        flags = {flag for action in sub._actions for flag in action.option_strings}
        assert {"--output", "-o"} <= flags, f"skad-transfer {name}: its output is not --output/-o"
        text = sub.format_help()
        assert "(default: None)" not in text and "(default: False)" not in text
    assert "seed of the data and of every fit (default: 0)" in " ".join(subparsers.choices["demo"].format_help().split())


def test_help_texts_are_plain_text_not_restructuredtext(capsys):
    import re

    import pytest

    from skad_transfer.cli import SUBCOMMANDS

    for argv in ([], *([name] for name in SUBCOMMANDS)):
        with pytest.raises(SystemExit) as info:
            main([*argv, "--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: skad-transfer"), argv
        assert "``" not in out, (argv, out)
        assert not re.search(r":[a-z]+:`", out), (argv, out)   # :func:, :class:, :mod:, :meth:, ...
        if not argv:
            assert "The skad-transfer command (also python -m skad_transfer)." in out


def test_plain_text_takes_out_inline_markup_only():
    from skad_transfer.cli import plain_text

    assert plain_text("``x`` and :class:`~a.b.StoreError`, :mod:`tomllib`, :py:meth:`Task.config`, "
                      ":ref:`the guide <guide>`, `PyOD`_") == \
        "x and StoreError, tomllib, Task.config(), the guide, PyOD"
    for text in ("theta0: a registered name", "'skad-transfer report --tsne'", "(default: %(default)s)", "a:b"):
        assert plain_text(text) == text
