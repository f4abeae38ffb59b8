"""The installed `capgen` console command, run as a user runs it."""
import shutil
import subprocess

import pytest

import capgen


def capgen_cmd(*args, cwd=None):
    exe = shutil.which("capgen")
    assert exe, "the `capgen` console script is not on PATH: is capgen installed (pip install -e .)?"
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_version():
    r = capgen_cmd("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"capgen {capgen.__version__}"


@pytest.mark.parametrize("args", [(), ("--help",)])
def test_help_lists_commands(args):
    r = capgen_cmd(*args)
    assert r.returncode == 0
    assert "demo" in r.stdout and "--version" in r.stdout


def test_demo_help_lists_options():
    r = capgen_cmd("demo", "--help")
    assert r.returncode == 0
    for opt in ["--out", "--d", "--n", "--sizes", "--seed"]:
        assert opt in r.stdout


def test_demo_small(tmp_path):
    r = capgen_cmd("demo", "--out", str(tmp_path / "out"), "--d", "16", "--n", "3000", "--sizes", "0.001", "1.5")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["caps.md", "caps.png"]
    table = (tmp_path / "out" / "caps.md").read_text()
    assert "| 0.001 |" in table and "| 1.5 |" in table and table.count("| 3,000 | 3,000 |") == 2


@pytest.mark.parametrize("args, message", [
    (("demo", "--sizes", "2.5"), "`d_max` must lie in [0, 2]"),
    (("demo", "--n", "0"), "`n` must be a positive integer"),
    (("demo", "--d", "1"), "≥ 2"),
    (("demo", "--n", "lots"), "--n"),
    (("train",), "invalid choice"),
])
def test_bad_input_names_the_parameter(tmp_path, args, message):
    r = capgen_cmd(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert message in r.stderr, r.stderr
    assert not (tmp_path / "capgen-demo").exists()
