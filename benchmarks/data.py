"""Benchmark: images per second through `capgen.data.build_dataset`, and where the time goes.

Prints, in one run: the machine and versions; for each source — the shapes world (images drawn in memory), a
folder of 64 px PNG files, and a folder of 256 px JPEG files (decoded, cropped and shrunk to 64 px) — with one
and with two worker processes, the wall-clock throughput of a whole `build_dataset` call into a fresh folder
(listing, fingerprints and writing included), and the time each stage took per image: decode (reading, decoding,
converting and resizing; drawing, for the shapes world), tokenizer, embedder, write. With two workers the stage
times are summed over both, so they measure work, not waiting.

Models: the shapes-world CLIP (`capgen.clip.default_embedder()`, d = 128) and an `FSQTokenizer` of the default
configuration (64 px → 8×8 tokens); its weights are untrained, which does not change its speed.

Run: `python benchmarks/data.py` (writes `benchmarks/results/data.md`, shown on the data docs page); `--quick`
for a fast smoke run. Run it on an otherwise idle machine: other work on the CPU inflates every number.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

import capgen
from _report import cpu_model, publish
from capgen.clip import default_embedder
from capgen.data import ShapesSource, build_dataset, build_report
from capgen.shapes import ShapesWorld
from capgen.tokenizer import FSQTokenizer, TokenizerConfig

STAGES = ("decode", "tokenizer", "embedder", "write")


def machine() -> str:
    import datasets
    import PIL
    cpu = cpu_model()
    return (f"Machine: {cpu}, {torch.get_num_threads()} torch threads; Python "
            f"{platform.python_version()}, torch {torch.__version__}, datasets {datasets.__version__}, "
            f"Pillow {PIL.__version__}, capgen {capgen.__version__}")


def write_folder(root: Path, n: int, size: int, fmt: str) -> Path:
    "The first `n` shapes-world training images, drawn at `size` px, as files."
    world = ShapesWorld(size=size)
    root.mkdir(parents=True)
    for i in range(n):
        world.image(i).save(root / f"{i:07d}.{fmt}", **({"quality": 90} if fmt == "jpg" else {}))
    return root


def run(name: str, source, emb, tok, work: Path, n: int, num_proc: int, shard_size: int) -> dict:
    out = work / f"built-{len(list(work.iterdir()))}"
    start = time.perf_counter()
    ds = build_dataset(source, emb, tok, out, shard_size=shard_size, num_proc=num_proc, progress=False)
    wall = time.perf_counter() - start
    assert len(ds) == n, (name, len(ds), n)
    rep = build_report(out)
    shutil.rmtree(out)
    return dict(name=name, num_proc=num_proc, wall=wall, rate=n / wall,
                ms={s: 1e3 * rep["seconds"][s] / n for s in STAGES})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="256 images: a smoke run")
    p.add_argument("--n", type=int, default=4096, help="images per build")
    p.add_argument("--shard-size", type=int, default=512)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "data.md")
    args = p.parse_args(argv)
    n, shard = (256, 64) if args.quick else (args.n, args.shard_size)

    torch.manual_seed(0)
    tok, emb = FSQTokenizer(TokenizerConfig()), default_embedder()
    work = Path(tempfile.mkdtemp(prefix="capgen-bench-data-"))
    try:
        t = time.perf_counter()
        png = write_folder(work / "png", n, 64, "png")
        jpg = write_folder(work / "jpg", n, 256, "jpg")
        print(f"wrote {2 * n:,} image files in {time.perf_counter() - t:.1f} s")
        (work / "runs").mkdir()
        sources = [("shapes world (drawn)", ShapesSource(n)), ("folder: 64 px PNG", png), ("folder: 256 px JPEG", jpg)]
        results = []
        for name, src in sources:
            for num_proc in (1, 2):
                r = run(name, src, emb, tok, work / "runs", n, num_proc, shard)
                print(f"{name}, num_proc={num_proc}: {r['rate']:.0f} images/s")
                results.append(r)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    lines = [f"`python benchmarks/data.py{' --quick' if args.quick else ''}` — {machine()}.", "",
             f"{n:,} images per build, shards of {shard}; tokenizer: FSQ, {tok.image_size} px → {tok.grid}×{tok.grid} "
             f"tokens of {tok.vocab_size:,}; embedder: the shapes-world CLIP, d = 128. Throughput is wall-clock for a "
             f"whole `build_dataset` call; stage times are per image and, with 2 processes, summed over both.", "",
             "| source | processes | images/s | decode ms | tokenizer ms | embedder ms | write ms | decode / tokenizer / embedder / write |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        tot = sum(r["ms"].values())
        share = " / ".join(f"{100 * r['ms'][s] / tot:.0f}%" for s in STAGES)
        lines.append(f"| {r['name']} | {r['num_proc']} | **{r['rate']:,.0f}** | "
                     + " | ".join(f"{r['ms'][s]:.2f}" for s in STAGES) + f" | {share} |")
    publish(lines, args.out)


if __name__ == "__main__":
    main()
