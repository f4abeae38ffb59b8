"""Benchmark: the digits world end to end, and the tokenizer/CLIP training throughput on folders of images.

1. `capgen demo --world digits` from nothing: the installed command in a fresh process with an empty cache
   (`CAPGEN_CACHE` in a new temporary folder), so the training digits are written to a folder with their captions,
   every part is trained on it through the commands (CLIP, tokenizer, build-dataset, flow, transformer, pipeline),
   the judge is trained, and the images are generated and judged. Prints the wall time and the seconds of each step
   beside those of the shapes world's `capgen demo` recorded in `results/demo.md` (same machine kind), and the
   judged digit accuracy and FID/KID. Goals (exit 1 when one is missed): the digits demo takes no longer than the
   shapes demo, and at the best cap size at least 90% of the digits drawn from text prompts are the asked digit.
2. `capgen.images.train_image_tokenizer` and `train_clip` on folders of digits written at 64 and 256 pixels, on the
   same 64-pixel digits as webdataset tar shards (streamed through `ShardStream`), and on shapes-world renders
   (`shapes:N`) at 64 pixels, measured in this run: images trained on per second (one epoch, reading and the
   held-out report included) and images read per second.

Run: `python benchmarks/digits.py [--skip-demo] [--n64 N] [--n256 N]` (writes `benchmarks/results/digits.md`, shown
on the digits page, 11c_digits).
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
from capgen.clip import ClipConfig
from capgen.config import TrainConfig
from capgen.demo import recorded_run
from capgen.digits import write_digits
from capgen.images import ImageData, captioned, load_image_data, train_clip, train_image_tokenizer
from capgen.shards import write_webdataset
from capgen.tokenizer import TokenizerConfig
from _report import cpu_model, publish

RESULTS = Path(__file__).parent / "results"
GOAL_ACCURACY = 0.90


def shapes_demo_minutes() -> tuple[float | None, str]:
    "The shapes world's `capgen demo` wall time recorded in results/demo.md, and the machine that measured it."
    path = RESULTS / "demo.md"
    if not path.is_file(): return None, "no results/demo.md"
    try: run = recorded_run(path.read_text())
    except ValueError: return None, "results/demo.md unreadable"
    return run["minutes"], run["machine"]


def run_demo(tmp: Path) -> tuple[float, dict]:
    exe = shutil.which("capgen")
    if exe is None: sys.exit("the `capgen` command is not on PATH: pip install -e . first")
    env = os.environ | {"CAPGEN_CACHE": str(tmp / "cache")}
    t0 = time.perf_counter()
    r = subprocess.run([exe, "demo", "--world", "digits", "--out", str(tmp / "out")], env=env, cwd=tmp,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if r.returncode: sys.exit(f"capgen demo --world digits failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return wall, json.loads((tmp / "out" / "metrics.json").read_text())


def throughput(kind: str, source: str, size: int, n: int) -> dict:
    "One epoch of `kind` ('tokenizer' or 'clip') on the first `n` images of `source` at `size` pixels."
    data = ImageData(source, n_valid=32, limit=n)
    t0 = time.perf_counter()
    d = load_image_data(data, size, captions=kind == "clip", progress=False)
    read = time.perf_counter() - t0
    tc = TrainConfig(epochs=1, batch_size=32, ckpt_every_minutes=None, ckpt_dir=tempfile.mkdtemp(prefix="capgen-bench-"))
    t0 = time.perf_counter()
    if kind == "tokenizer": _, rep = train_image_tokenizer(data, TokenizerConfig(image_size=size), tc, progress=False, log=lambda *a: None)
    else: _, rep = train_clip(data, ClipConfig(image_size=size), tc, progress=False, log=lambda *a: None)
    total = time.perf_counter() - t0
    shutil.rmtree(tc.ckpt_dir, ignore_errors=True)
    return {"train": len(d["train"]), "read_per_s": (len(d["train"]) + len(d["valid"])) / read,
            "train_per_s": len(d["train"]) / total, "seconds": total}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--skip-demo", action="store_true", help="only the throughput part")
    p.add_argument("--n64", type=int, default=1024, help="images at 64 px")
    p.add_argument("--n256", type=int, default=256, help="images at 256 px")
    a = p.parse_args()
    lines = [f"`python benchmarks/digits.py` — Machine: {cpu_model()}, {torch.get_num_threads()} torch threads, no GPU; "
             f"Python {platform.python_version()}, torch {torch.__version__}, capgen {capgen.__version__}.", ""]
    failed = []
    with tempfile.TemporaryDirectory(prefix="capgen-digits-bench-") as tmp:
        tmp = Path(tmp)
        if not a.skip_demo:
            wall, m = run_demo(tmp)
            shapes_min, shapes_machine = shapes_demo_minutes()
            lines += [f"`capgen demo --world digits` from an empty cache: **{wall / 60:.1f} minutes** of wall time; the shapes "
                      f"world's `capgen demo`, recorded in results/demo.md ({shapes_machine}): "
                      f"{'?' if shapes_min is None else f'{shapes_min:.1f}'} minutes"
                      + (f", {shapes_min * 60 / wall:.1f}× as long." if shapes_min else "."), "",
                      "| step (digits) | seconds |", "|---|---:|"]
            lines += [f"| {k} | {v:.0f} |" for k, v in m["seconds"].items() if k != "total"]
            lines += [f"| total (inside the command) | {m['seconds']['total']:.0f} |", f"| wall, with Python start-up | {wall:.0f} |", ""]
            best = max(m["sweep"], key=lambda k: m["sweep"][k]["digit_accuracy"])
            acc = m["sweep"][best]["digit_accuracy"]
            lines += [f"The judge reads {100 * m['classifier_accuracy']:.1f}% of held-out real digits right. Digits drawn from text "
                      f"prompts ({m['images_per_prompt']} images a prompt), read as the asked digit: **{100 * acc:.1f}%** at the "
                      f"best cap size ({best}; goal ≥ {100 * GOAL_ACCURACY:.0f}%). FID/KID against the 1,000 judge-split "
                      "digits, in the judge's feature space:", ""]
            cols = list(next(iter(m["sweep"].values())).keys())
            lines += ["| d_max | " + " | ".join(cols) + " |", "|---:" + "|---:" * len(cols) + "|"]
            lines += [f"| {s} | " + " | ".join(f"{v:.3f}" for v in r.values()) + " |" for s, r in m["sweep"].items()]
            lines += ["", "| route | " + " | ".join(cols) + " |", "|---" + "|---:" * len(cols) + "|"]
            lines += [f"| {k} | " + " | ".join(f"{v:.3f}" for v in r.values()) + " |" for k, r in m["comparison"].items()]
            lines.append("")
            if shapes_min is not None and wall > shapes_min * 60: failed.append(f"the digits demo took {wall / 60:.1f} min, the shapes demo {shapes_min:.1f}")
            if acc < GOAL_ACCURACY: failed.append(f"digit accuracy {100 * acc:.1f}% < {100 * GOAL_ACCURACY:.0f}%")
        folders = {s: write_digits(tmp / f"digits-{s}", "train", size=s, n=n + 32) for s, n in ((64, a.n64), (256, a.n256))}
        src, caps = captioned(str(folders[64]))
        write_webdataset(src, tmp / "digits-64-shards", captions=caps, shard_size=256)
        runs = [("digits folder", str(folders[64]), 64, a.n64), ("digits tar shards", str(tmp / "digits-64-shards"), 64, a.n64),
                ("shapes:N renders", f"shapes:{a.n64 + 32}", 64, a.n64), ("digits folder", str(folders[256]), 256, a.n256)]
        lines += ["Training throughput, one epoch of the library defaults' architecture at each size (`TokenizerConfig`, "
                  "`ClipConfig`), batch 32, reading and the held-out report (32 images) included:", "",
                  "| part | images | size | trained on | images/s trained | images/s read |", "|---|---|---:|---:|---:|---:|"]
        for kind in ("tokenizer", "clip"):
            for name, src, size, n in runs:
                r = throughput(kind, src, size, n)
                lines.append(f"| {kind} | {name} | {size} | {r['train']} | {r['train_per_s']:.1f} | {r['read_per_s']:.0f} |")
                print(lines[-1], flush=True)
    publish(lines, RESULTS / "digits.md")
    if failed: sys.exit("goals not met: " + "; ".join(failed))


if __name__ == "__main__":
    main()
