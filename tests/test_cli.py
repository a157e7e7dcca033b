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
