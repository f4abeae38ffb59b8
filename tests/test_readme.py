"""README.md: generated from the docs home page, with a true two-command Quickstart at the top."""
import re
import subprocess
from pathlib import Path

import make_readme

ROOT = Path(__file__).resolve().parents[1]


def quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in re.findall(r"```sh\n(.*?)```", section, flags=re.S)]


def test_readme_is_generated_from_index():
    assert (ROOT / "README.md").read_text(encoding="utf-8") == make_readme.readme_text(), \
        "README.md is stale: run `python tools/make_readme.py`"


def test_quickstart_comes_first_with_two_one_line_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert re.findall(r"^## (.+)$", text, flags=re.M)[0] == "Quickstart"
    cmds = quickstart_commands()
    assert len(cmds) == 2 and all("\n" not in c for c in cmds), cmds
    run, test = cmds
    assert run.startswith("python3 -m venv .venv") and "pip install -e ." in run and run.endswith("capgen demo")
    assert 'pip install -e ".[dev]"' in test and test.endswith("nbdev_test && pytest")


def test_main_job_runs_as_the_readme_says(tmp_path):
    "The first command after its install: `capgen demo` with its defaults, run from a fresh folder."
    job = quickstart_commands()[0].split(" && ")[-1]
    r = subprocess.run(job, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    table = (tmp_path / "capgen-demo" / "caps.md").read_text()
    rows = [line for line in table.splitlines() if re.match(r"\| [0-9.e-]+ \|", line)]
    assert len(rows) == 6 and all("| 100,000 | 100,000 |" in row for row in rows), table
    assert (tmp_path / "capgen-demo" / "caps.png").stat().st_size > 10_000
