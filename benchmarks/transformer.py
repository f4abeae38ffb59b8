"""Benchmark: stage 2's sampling and training speed, measured against each other in one run.

Prints: the machine and versions; for the shapes-world configuration (and any other given by `--config`), tokens/s
of `generate` for full images with and without the KV cache (the uncached sampler runs the whole prefix again for
every token; both give the same tokens), the cost of classifier-free guidance (the doubled batch), training tokens/s
(forward, backward and AdamW step; float32 and bf16 autocast), and peak memory of each measurement (CUDA: peak
allocated by torch; CPU: peak resident memory of the process, each case in a fresh process, so it includes the
~0.5 GiB that importing torch and capgen takes).

Run: `python benchmarks/transformer.py` (writes `benchmarks/results/transformer.md`, shown on the transformer docs
page); `--device cuda` on a GPU; `--quick` for a smoke run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

import capgen
from _report import cpu_model, publish
from capgen.transformer import ImageTransformer, TransformerConfig, generate
from capgen.transformer_training import token_loss

CONFIGS = {
    "shapes": TransformerConfig(),
    "base (GPU)": TransformerConfig(vocab_size=16384, grid=16, cond_dim=768, d_model=768, n_layers=12, n_heads=12),
}


def machine(device: str) -> str:
    cpu = cpu_model()
    gpu = f", {torch.cuda.get_device_name()}" if device == "cuda" else ""
    return (f"Machine: {cpu}, {torch.get_num_threads()} torch threads{gpu}; Python "
            f"{platform.python_version()}, torch {torch.__version__}, capgen {capgen.__version__}")


def _sync(device):
    if device == "cuda": torch.cuda.synchronize()


def run_case(case: dict) -> dict:
    "One measurement, in this process: returns seconds per call, tokens per call and peak memory above the start."
    device, cfg = case["device"], TransformerConfig.from_dict(case["config"])
    torch.manual_seed(0)
    model = ImageTransformer(cfg).to(device)
    b = case["batch"]
    cond = torch.nn.functional.normalize(torch.randn(b, cfg.cond_dim, device=device), dim=-1)
    if case["kind"] == "train":
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        tokens = torch.randint(0, cfg.vocab_size, (b, cfg.n_tokens), device=device)
        def call():
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=case["precision"] == "bf16"):
                loss = token_loss(model(tokens, cond), tokens)
            loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        per_call = b * cfg.n_tokens
    else:
        model.eval()
        g = torch.Generator(device)
        def call():
            g.manual_seed(0)
            generate(model, cond, 1, cfg_scale=case["cfg_scale"], use_cache=case["cache"], generator=g, top_k=100)
        per_call = b * cfg.n_tokens
    call(); _sync(device)   # warm-up (allocations, kernels)
    if device == "cuda": torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(case["repeat"]):
        t0 = time.perf_counter(); call(); _sync(device); times.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"seconds": min(times), "tokens": per_call, "peak_mib": peak}


def measure(case: dict) -> dict:
    "Run `case` in a fresh Python process (so that CPU peak memory is its own)."
    out = subprocess.run([sys.executable, __file__, "--case", json.dumps(case)], capture_output=True, text=True,
                         check=True, env=os.environ | {"PYTHONPATH": str(Path(__file__).parent)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--quick", action="store_true", help="fewer repeats, the shapes configuration only: a smoke run")
    p.add_argument("--configs", nargs="*", default=None, help=f"which of {list(CONFIGS)} (default: shapes on CPU, both on CUDA)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return
    names = args.configs or (["shapes"] if args.device == "cpu" or args.quick else list(CONFIGS))
    out = args.out or Path(__file__).parent / "results" / f"transformer{'-cuda' if args.device == 'cuda' else ''}.md"
    rep = 1 if args.quick else 3
    lines = [f"`python benchmarks/transformer.py{' --device cuda' if args.device == 'cuda' else ''}"
             f"{' --quick' if args.quick else ''}` — {machine(args.device)}.", ""]
    for name in names:
        cfg = CONFIGS[name]
        n_params = ImageTransformer(cfg).n_params
        lines += [f"**{name}**: vocabulary {cfg.vocab_size:,}, {cfg.grid}×{cfg.grid} tokens, condition {cfg.cond_dim}-d, "
                  f"d_model {cfg.d_model}, {cfg.n_layers} layers, {cfg.n_heads} heads; {n_params / 1e6:.1f} M parameters.", "",
                  "| what | batch | tokens/s | ms per image | peak memory (MiB)" + (" allocated" if args.device == "cuda" else ", process RSS") + " | comparison |",
                  "|---|---:|---:|---:|---:|---|"]
        base = dict(device=args.device, config=cfg.to_dict(), repeat=rep)
        for b in ([1, 4, 16] if name == "shapes" else [1, 8]):
            r = {}
            for label, cache, s in (("generate, no cache", False, 1.0), ("generate, KV cache", True, 1.0),
                                    ("generate, KV cache, CFG 3", True, 3.0)):
                if not cache and name != "shapes" and args.quick: continue
                r[label] = m = measure(base | dict(kind="generate", batch=b, cache=cache, cfg_scale=s))
                tps = m["tokens"] / m["seconds"]
                cmp = ""
                if label == "generate, KV cache" and "generate, no cache" in r:
                    cmp = f"**{r['generate, no cache']['seconds'] / m['seconds']:.1f}× faster** than no cache"
                if label.endswith("CFG 3"):
                    cmp = f"{m['seconds'] / r['generate, KV cache']['seconds']:.2f}× the time of no guidance"
                lines.append(f"| {label} | {b} | {tps:,.0f} | {1e3 * m['seconds'] / b:.1f} | {m['peak_mib']:.0f} | {cmp} |")
        tb = 64 if name == "shapes" else 16
        r = {}
        for prec in ("fp32", "bf16"):
            r[prec] = m = measure(base | dict(kind="train", batch=tb, precision=prec))
            cmp = f"{r['fp32']['seconds'] / m['seconds']:.2f}× the speed of fp32" if prec == "bf16" else ""
            lines.append(f"| training step, {prec} | {tb} | {m['tokens'] / m['seconds']:,.0f} | "
                         f"{1e3 * m['seconds'] / tb:.1f} | {m['peak_mib']:.0f} | {cmp} |")
        lines.append("")
    lines.append("Sampling uses top-k 100 at temperature 1; tokens/s counts the images' tokens (guidance's second "
                 "batch is not counted). Timing: best of the repeats after a warm-up call. At batch 1 on a CPU every "
                 "decoding step reads all the weights once, cached or not, so the cache saves only the arithmetic on "
                 "the prefix; the gain grows with the batch.")
    publish(lines, out)


if __name__ == "__main__":
    main()
