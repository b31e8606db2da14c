import subprocess
import sys

from combax import __version__
from combax.cli import build_parser, main


def test_version_subcommand(capsys):
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == f"combax {__version__}"


def test_help_lists_every_subcommand():
    help_text = build_parser().format_help()
    for name in ("version", "demo"):
        assert name in help_text


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "combax.cli", "--help"], capture_output=True, text=True, check=True)
    assert "demo" in out.stdout


def test_demo_data_step_writes_table(tmp_path):
    from combax.demo import run_demo

    rows = run_demo(tmp_path, only=["data"])
    assert {r.task for r in rows} == {"load mnist5k", "load digits"}
    assert (tmp_path / "results.md").read_text().startswith("| step")
