"""Benchmark: the default shapes-world CLIP, trained from scratch on this machine.

Prints, in one run: the machine and versions; the training time of the default configuration
(`capgen.clip.default_configs()`, the model `default_embedder()` caches); zero-shot accuracy per attribute on
1,000 held-out images (validation split) next to chance; text → image retrieval over the same images with one
random caption each (recall@1, recall@5, and true@1: the top image is one the caption describes); and the
modality gap (mean cosine similarities of matched and random pairs). An untrained model of the same
architecture is measured alongside, as the comparison that shows what training bought. The trained model is
saved where `default_embedder()` looks for it, so the docs then show this very model.

Run: `python benchmarks/clip.py` (writes `benchmarks/results/clip.md`, shown on the clip docs page);
`--quick` for a fast smoke run. Training time counts rendering the images and tokenizing the captions.
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
from capgen.clip import (Embedder, cached_path, default_configs, default_train_config, modality_gap, retrieval,
                         train_shapes_clip, zero_shot_accuracy)
from capgen.shapes import ATTRIBUTES, ShapesWorld


def machine() -> str:
    import open_clip
    cpu = cpu_model()
    return (f"Machine: {cpu}, {torch.get_num_threads()} torch threads; Python "
            f"{platform.python_version()}, torch {torch.__version__}, open_clip {open_clip.__version__}, "
            f"capgen {capgen.__version__}")


def tower(cfg) -> str:
    if cfg.vision == "vit":
        return f"ViT on {cfg.image_size}px, patch {cfg.patch_size}, width {cfg.vision_width} × {cfg.vision_layers} layers"
    return (f"ModifiedResNet on {cfg.image_size}px, width {cfg.vision_width} (last stage {32 * cfg.vision_width}), "
            f"{cfg.vision_layers} block(s) per stage")


def measure(emb: Embedder, world: ShapesWorld, n: int) -> dict:
    gap = modality_gap(emb, world, n)
    return dict(acc=zero_shot_accuracy(emb, world, n), ret=retrieval(emb, world, n),
                gap={k: float(v.mean()) for k, v in gap.items() if not k.endswith("_side")})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a small data set and one epoch: a smoke run")
    p.add_argument("--n", type=int, default=1000, help="held-out images to evaluate on")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "clip.md")
    args = p.parse_args(argv)
    cfg, data, train_cfg = default_configs()
    if args.quick:
        data, train_cfg = type(data)(n_train=2000, n_valid=256), default_train_config(epochs=1)
    world = ShapesWorld()

    start = time.perf_counter()
    emb = train_shapes_clip(cfg, data, train_cfg)
    total = time.perf_counter() - start
    if not args.quick: print(f"trained in {total:.0f} s; cached in {emb.save(cached_path((cfg, data, train_cfg)))}")
    torch.manual_seed(0)
    results = {"trained": measure(emb, world, args.n), "untrained": measure(Embedder.from_config(cfg), world, args.n)}

    n_params = sum(p.numel() for p in emb.model.parameters())
    frozen = sum(p.numel() for p in emb.model.token_embedding.parameters())
    lines = [f"`python benchmarks/clip.py{' --quick' if args.quick else ''}` — {machine()}.", "",
             f"Default model: {tower(cfg)}; text width {cfg.text_width} × {cfg.text_layers} layers, context "
             f"{cfg.context_length}; embedding d = {cfg.embed_dim}; {n_params / 1e6:.1f} M parameters "
             f"({frozen / 1e6:.1f} M of them the frozen token table). Data: {data.n_train:,} images × "
             f"{data.captions_per_image} captions; {train_cfg.epochs} epochs, batch {train_cfg.batch_size}, "
             f"lr {train_cfg.lr:g}.", "",
             f"**Training time: {total:.0f} s** in all ({emb.source['trained']['seconds']:.0f} s in the training "
             f"loop, the rest rendering and tokenizing); learned temperature 1/{emb.source['trained']['logit_scale']:.1f}.",
             "", f"Zero-shot accuracy on {args.n:,} held-out images (validation split):", "",
             "| model | " + " | ".join(ATTRIBUTES) + " |", "|---|" + "---:|" * len(ATTRIBUTES),
             "| chance | " + " | ".join(f"{1 / len(v):.1%}" for v in ATTRIBUTES.values()) + " |"]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{r['acc'][k]:.1%}" for k in ATTRIBUTES) + " |")
    lines += ["", f"Text → image retrieval over {args.n:,} held-out images, one random caption each "
              f"(chance: recall@1 {1 / args.n:.1%}, recall@5 {5 / args.n:.1%}):", "",
              "| model | recall@1 | recall@5 | true@1 |", "|---|---:|---:|---:|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['ret']['recall@1']:.1%} | {r['ret']['recall@5']:.1%} | {r['ret']['true@1']:.1%} |")
    g = results["trained"]["gap"]
    lines += ["", "Modality gap of the trained model, mean cosine similarity: "
              + ", ".join(f"{k} {v:.2f}" for k, v in g.items() if k not in ("gap", "separable"))
              + f"; |mean image − mean caption| {g['gap']:.2f}; images and captions separable along that direction "
              f"{g['separable']:.0%} of the time.",
              "", "true@1: the nearest image has every attribute its caption states. Exact recall is capped by "
              "captions that fit many images (\"a red circle\" fits one in 48)."]
    publish(lines, args.out)


if __name__ == "__main__":
    main()
