"""README.md: generated from the docs home page, with a true two-command Quickstart at the top."""
import json
import os
import re
import subprocess
from pathlib import Path

import make_readme
import pytest
from PIL import Image

from capgen.cli import _parser
from capgen.demo import DEMO_PROMPTS, DEMO_SIZES, demo_shortfalls
from capgen.pipeline import TextToImage

ROOT = Path(__file__).resolve().parents[1]


def quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in re.findall(r"```sh\n(.*?)```", section, flags=re.S)]


def test_readme_is_generated_from_index():
    assert (ROOT / "README.md").read_text(encoding="utf-8") == make_readme.readme_text(), \
        "README.md is stale: run `python tools/make_readme.py`"


def test_readme_links_resolve_from_the_repository_root():
    "GitHub shows README.md at the root: each relative link (pages, images, files) names a file that is there."
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    links = [m.split("#")[0] for m in re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r'src="([^"]+)"', text)
             if not re.match(r"[a-z]+:|#", m)]
    assert links, "no relative links found: the pattern is wrong"
    missing = [m for m in links if not (ROOT / m).exists()]
    assert not missing, missing


def test_quickstart_comes_first_with_two_one_line_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert re.findall(r"^## (.+)$", text, flags=re.M)[0] == "Quickstart"
    cmds = quickstart_commands()
    assert len(cmds) == 2 and all("\n" not in c for c in cmds), cmds
    run, test = cmds
    assert run.startswith("python3 -m venv .venv") and "pip install -e ." in run and run.endswith("capgen demo")
    assert 'pip install -e ".[dev]"' in test and test.endswith("nbdev_test && pytest")


def readme_job() -> str:
    job = quickstart_commands()[0].split(" && ")[-1]
    assert job == "capgen demo"
    return job


def run_job(job: str, tmp_path: Path, timeout: int):
    """`job` in a shell, from a fresh folder with an empty cache of its own, as on a newcomer's machine; returns the
    output folder and its metrics, after checking what every tier writes."""
    env = {**os.environ, "CAPGEN_CACHE": str(tmp_path / "cache")}
    r = subprocess.run(job, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    out = tmp_path / "capgen-demo"
    assert sorted(p.name for p in out.iterdir()) == ["capgen.json", "grids", "metrics.json", "pipeline", "report.html", "sweep.png"]
    m = json.loads((out / "metrics.json").read_text())
    assert m["prompts"] == list(DEMO_PROMPTS) and m["sizes"] == list(DEMO_SIZES)
    report = (out / "report.html").read_text()
    assert len(m["grids"]) == len(DEMO_PROMPTS) and "sweep.png" in report
    for g in m["grids"]:
        assert g in report and Image.open(out / g).size[0] > 300, g
    assert set(m["in_cap"]) == {f"{s:g}" for s in DEMO_SIZES} | {"auto"} and set(m["auto_sizes"]) == set(DEMO_PROMPTS)
    assert set(m["seconds"]) >= {"CLIP", "reader", "tokenizer", "transformer", "flow", "total"}
    pipe = TextToImage.load(out / "pipeline")
    assert not list((tmp_path / "cache").glob("*.checkpoints"))     # every part finished: no checkpoint left behind
    assert pipe.generate("a red star in the top left", d_max=0.5, n=2, seed=0).images.shape[:2] == (1, 2)
    return out, m


def test_main_job_runs_as_the_readme_says(tmp_path):
    """The README's main job with `--fast` (every step of `capgen demo`, with tiny models: a minute or two), through
    the installed console command; and the README's `capgen demo` itself selects the demo tier and its prompts. The
    demo tier from nothing takes tens of minutes on 2 cores (benchmarks/results/demo.md): it is the `slow` test below."""
    job = readme_job()
    a = _parser().parse_args(job.split()[1:])
    assert (a.command, a.tier, a.fast, a.full) == ("demo", "demo", False, False)
    # the shapes world, its prompts and cap sizes, into capgen-demo (defaults the command fills in, as they differ by world)
    assert (a.world, a.prompts, a.sizes, a.out) == ("shapes", None, None, None)
    out, m = run_job(job + " --fast", tmp_path, timeout=1200)
    assert m["tier"] == "fast"


@pytest.mark.slow
def test_main_job_from_nothing(tmp_path):
    """`capgen demo` exactly as the README says, from an empty cache (`pytest -m slow`; benchmarks/demo.py runs the
    same and records its time and figures). The hour allowed covers 2 cores without AVX-512."""
    out, m = run_job(readme_job(), tmp_path, timeout=3600)
    assert m["tier"] == "demo"
    # colour, position and shape far above chance, row E near chance (the goals and their margins: 11a_demo)
    assert not demo_shortfalls(m), (demo_shortfalls(m), m["comparison"])
