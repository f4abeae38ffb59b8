"""Benchmark: `capgen demo` from nothing — the README's main job, timed as a newcomer runs it.

Runs the installed `capgen demo` in a fresh process with an empty cache (`CAPGEN_CACHE` in a new temporary folder),
so every part is trained (CLIP, reader, tokenizer, transformer, flow), the dataset is built, images are generated and
evaluated. Prints and records the wall time of the whole command, the seconds of each step (from the demo's
`metrics.json`), and the prompt adherence it measured, against the ≤ 15 minute goal on 2 CPU cores, and checks the
adherence floors of the README test (exits 1 below a goal). Beside each figure it prints the one the results file
held before this run (the previous default, with the machine that measured it).

Run: `python benchmarks/demo.py [--tier demo|fast|full]` (writes `benchmarks/results/demo.md`, shown on the demo's
docs page, 11a_demo; `--tier fast` writes `demo-fast.md`).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import capgen
from capgen.demo import demo_shortfalls, recorded_run
from capgen.pipeline import AUTO_SHARE
from _report import cpu_model, publish

GOAL_S = 15 * 60


def _fmt(v) -> str: return f"{v:g}" if isinstance(v, (int, float)) else str(v)


def beside(prev: dict, m: dict, wall: float) -> list[str]:
    "Markdown: the main figures of this run (`metrics.json` `m`) beside `prev`'s (`recorded_run` of the previous file)."
    if not prev: return []
    lines = [f"This run beside the previous recorded default (measured on {prev['machine']}):", "",
             "| figure | previous | now |", "|---|---:|---:|", f"| wall minutes | {prev['minutes']:g} | {wall / 60:.1f} |"]
    lines += [f"| {k} s | {_fmt(prev['seconds'].get(k, '—'))} | {v:.0f} |" for k, v in m["seconds"].items() if k != "total"]
    for key, label in (("0.5", "d_max 0.5"), ("auto", "auto size"), ("D: oracle, real image's embedding → transformer", "oracle D")):
        now = m["sweep"].get(key) or next((v for k, v in m["comparison"].items() if k == key), None)
        for c in ("shape", "colour", "size", "position", "in_cap", "diversity"):
            if now is None or c not in now: continue
            was = (prev["sweep"].get(key) or prev["routes"].get(key) or {}).get(c, "—")
            lines.append(f"| {label} {c} | {_fmt(was)} | {_fmt(now[c])} |")
    return lines + [""]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tier", default="demo", choices=["demo", "fast", "full"])
    a = p.parse_args()
    exe = shutil.which("capgen")
    if exe is None: sys.exit("the `capgen` command is not on PATH: pip install -e . first")
    name = "demo.md" if a.tier == "demo" else f"demo-{a.tier}.md"
    old = Path(__file__).parent / "results" / name
    prev = recorded_run(old.read_text()) if old.exists() else {}
    with tempfile.TemporaryDirectory(prefix="capgen-demo-bench-") as tmp:
        env = os.environ | {"CAPGEN_CACHE": str(Path(tmp) / "cache")}
        t0 = time.perf_counter()
        r = subprocess.run([exe, "demo", "--tier", a.tier, "--out", str(Path(tmp) / "out")], env=env, cwd=tmp,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
        if r.returncode: sys.exit(f"capgen demo failed ({r.returncode}):\n{r.stderr[-3000:]}")
        m = json.loads((Path(tmp) / "out" / "metrics.json").read_text())
    lines = [f"`python benchmarks/demo.py --tier {a.tier}` — Machine: {cpu_model()}, "
             f"{torch.get_num_threads()} torch threads, no GPU; Python {platform.python_version()}, torch {torch.__version__}, "
             f"capgen {capgen.__version__}.", "",
             f"`capgen demo --tier {a.tier}` from an empty cache: **{wall / 60:.1f} minutes** of wall time "
             f"(goal for the default tier: ≤ {GOAL_S // 60} minutes on 2 cores: {'met' if wall <= GOAL_S else 'NOT met'}).", "",
             "| step | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in m["seconds"].items() if k != "total"]
    lines += [f"| total (inside the command) | {m['seconds']['total']:.0f} |", f"| wall, with Python start-up | {wall:.0f} |", ""]
    lines += ["Reader's own accuracy on 500 held-out renders: " + ", ".join(f"{k} {v}%" for k, v in m["reader_accuracy"].items()) + ".", "",
              f"Prompt adherence measured by the demo ({m['eval']['prompts']} random prompts × {m['eval']['images_per_prompt']} "
              "images, % of images; diversity: mean pairwise cosine distance):", ""]
    cols = list(next(iter(m["sweep"].values())).keys())
    lines += ["| d_max | " + " | ".join(cols) + " |", "|---:" + "|---:" * len(cols) + "|"]
    lines += [f"| {s} | " + " | ".join(f"{v:g}" for v in r.values()) + " |" for s, r in m["sweep"].items()]
    if "auto_sizes" in m:
        v = sorted(m["auto_sizes"].values())
        lines += ["", f"Cap sizes picked by `d_max='auto'` (each prompt's smallest cap holding {AUTO_SHARE:g} of the "
                  f"data) for the demo's prompts: {v[0]:.3f} to {v[-1]:.3f}."]
    lines += ["", f"Other routes at d_max {_fmt(m['eval']['d_max'])} (auto: each prompt's own size):", "", "| method | " + " | ".join(cols) + " |", "|---" + "|---:" * len(cols) + "|"]
    lines += [f"| {k} | " + " | ".join(f"{v:g}" for v in r.values()) + " |" for k, r in m["comparison"].items()]
    lines += [""] + beside(prev, m, wall)
    publish(lines, Path(__file__).parent / "results" / name)
    failed = []
    if a.tier == "demo":
        if wall > GOAL_S: failed.append(f"{wall / 60:.1f} minutes (goal: ≤ {GOAL_S // 60})")
        failed += demo_shortfalls(m)     # the README slow test's goals
    if failed: sys.exit("goals not met: " + "; ".join(failed))


if __name__ == "__main__":
    main()
