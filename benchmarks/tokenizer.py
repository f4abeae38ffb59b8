"""Benchmark: the default shapes-world tokenizer, and what real VQGANs cost on the same machine.

Prints, in one run: the machine and versions; the default `FSQTokenizer`'s training time (recorded when
`default_tokenizer()` trained it; it is trained now if the cache has none); on 2,000 held-out shapes-world images
(test split): PSNR, code usage, and the attribute reader's accuracy on reconstructions next to originals; an
untrained tokenizer of the same architecture alongside, as the comparison that shows what training bought; then
encode and decode throughput (images/s) of the default tokenizer and, for scale, of the two pretrained VQGAN
architectures users load with `load_vqgan` (taming's ImageNet f16-16384 and latent-diffusion's vq-f8, random
weights: speed does not depend on them) at their 256-pixel resolution.

Run: `python benchmarks/tokenizer.py` (writes `benchmarks/results/tokenizer.md`, shown on the tokenizer docs page);
`--quick` for a smoke run on fewer images.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

import capgen
from _report import cpu_model, publish
from capgen.shapes import default_reader
from capgen.tokenizer import (FSQTokenizer, VQGANConfig, VQGANTokenizer, default_configs, default_tokenizer,
                              evaluate_tokenizer)


def machine() -> str:
    cpu = cpu_model()
    return (f"Machine: {cpu}, {torch.get_num_threads()} torch threads; Python "
            f"{platform.python_version()}, torch {torch.__version__}, capgen {capgen.__version__}")


def throughput(tok, n: int, batch: int, repeat: int = 2) -> tuple[float, float]:
    "Encode and decode images/s of `tok` on `n` random images, in batches of `batch`."
    tok.batch_size = batch
    x = torch.rand(n, 3, tok.image_size, tok.image_size)
    def best(fn):
        t = min(_timed(fn) for _ in range(repeat))
        return n / t
    codes = tok.encode(x)
    return best(lambda: tok.encode(x)), best(lambda: tok.decode(codes))


def _timed(fn) -> float:
    t0 = time.perf_counter(); fn(); return time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer images: a smoke run")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "tokenizer.md")
    args = p.parse_args(argv)
    n = 300 if args.quick else 2000
    cfg, data, train_cfg = default_configs()
    tok = default_tokenizer()
    reader = default_reader()
    torch.manual_seed(0)
    res = {"trained": evaluate_tokenizer(tok, n, reader=reader), "untrained": evaluate_tokenizer(FSQTokenizer(cfg), n, reader=reader)}
    n_params = sum(p.numel() for p in tok.parameters())
    lines = [f"`python benchmarks/tokenizer.py{' --quick' if args.quick else ''}` — {machine()}.", "",
             f"Default tokenizer: FSQ levels {cfg.levels} (vocabulary {tok.vocab_size:,}), widths {cfg.widths}, "
             f"{cfg.image_size}×{cfg.image_size} → {tok.grid}×{tok.grid} tokens; {n_params / 1e6:.2f} M parameters. "
             f"Data: {data.n_train:,} renders; {train_cfg.epochs} epochs, batch {train_cfg.batch_size}, lr {train_cfg.lr:g}, "
             f"{train_cfg.precision}.", "",
             f"**Training time: {tok.train_seconds:.0f} s** (training loop, when `default_tokenizer()` trained it).", "",
             f"On {n:,} held-out renders (test split):", "",
             "| model | PSNR mean (dB) | PSNR of mean MSE | 5th percentile | codes used | reader: shape | colour | size | position | background |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in res.items():
        acc = r["reader_on_reconstructions"]
        lines.append(f"| {name} | {r['psnr_mean']:.2f} | {r['psnr_global']:.2f} | {r['psnr_p05']:.2f} | "
                     f"{100 * r['code_usage']:.1f}% | " + " | ".join(f"{100 * acc[k]:.2f}%" for k in
                                                                 ("shape", "colour", "size", "position", "background")) + " |")
    orig = res["trained"]["reader_on_originals"]
    lines.append("| (originals) | | | | | " + " | ".join(f"{100 * orig[k]:.2f}%" for k in
                                                       ("shape", "colour", "size", "position", "background")) + " |")
    lines += ["", "Throughput, images/s (float32, this machine's threads):", "",
              "| tokenizer | image | grid | batch | encode | decode |", "|---|---|---|---:|---:|---:|"]
    models = [("default FSQ", tok, [1, 64, 512], 512 if not args.quick else 128)]
    ldm_f8 = VQGANConfig(ch_mult=(1, 2, 2, 4), attn_levels=(3,), z_channels=4, embed_dim=4)
    models += [("taming VQGAN f16-16384 (random weights)", VQGANTokenizer(VQGANConfig(), 256).eval(), [4], 8 if not args.quick else 4),
               ("latent-diffusion vq-f8 (random weights)", VQGANTokenizer(ldm_f8, 256).eval(), [4], 8 if not args.quick else 4)]
    for name, m, batches, count in models:
        for b in batches:
            enc, dec = throughput(m, count, b)
            lines.append(f"| {name} | {m.image_size}² | {m.grid}² | {b} | {enc:,.1f} | {dec:,.1f} |")
    publish(lines, args.out)


if __name__ == "__main__":
    main()
