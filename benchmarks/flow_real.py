"""Benchmark: the cap-conditioned spherical flow on real CLIP image embeddings, against held-out embeddings.

No closed-form truth exists for real embeddings, so the flow is trained on the embeddings of training images and
judged, cap by cap, against the embeddings of held-out images that fall in the same cap. For each world (`shapes`:
the shapes world's default CLIP and flow architecture; `digits`: the MNIST digits world with the CLIP that
`capgen demo --world digits` trains and its flow settings) it prints:
- the embedding dimension, the number of training and held-out embeddings, and the flow's training seconds and
  examples/s; the world's flow is trained twice, as configured and with another share `--compare-center-on-data` of
  its training caps centred on data points (`FlowConfig.center_on_data`; by default half of them), and both are
  judged on the same caps;
- per cap: where it is centred (`on` a held-out embedding, or `near` one: drawn uniformly within d_max of it, as
  training draws caps around data), d_max (1 - cos of the angular radius; a cap that holds fewer than
  `--min-points` held-out embeddings is grown until it holds them, and the table marks it), the held-out points in
  it, the flows' in-cap rate and the fraction of their samples the solver reflected back into the cap, and the energy
  two-sample test (p-value over `--perms` permutations, z-score against the permutations) of four samples against
  the held-out points in the cap: each flow's samples, the training embeddings in the cap (the floor: a perfect
  model of the training set; train and held-out come from one distribution, so this rejects only by chance, or
  where the CLIP embeds the images it was trained on differently), and uniform samples in the cap (the power check);
- a summary per world and placement: how many caps are rejected at 1% by each flow, by the train-vs-held-out floor,
  and by uniform samples.

Run: `python benchmarks/flow_real.py` (writes `benchmarks/results/flow_real.md`); `--worlds shapes digits`,
`--quick` for a smoke run (tiny CLIPs and flows, few renders and caps), `--compare-center-on-data` (the
configured share: that flow only), `--device`, `--out`. The full run uses the
shapes world's default CLIP (`capgen.clip.default_embedder`, trained into the cache on first use, minutes on a CPU)
and the digits CLIP of `capgen demo --world digits` (from the cache when the demo trained it, else trained here the
same way and saved where the demo looks). Exits with status 1, after writing the results, when a flow sample lies
outside its cap; the flow's rejections beside the floor's are reported, not judged.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import capgen
from _report import cpu_model
from capgen.caps import Cap, sample_in_cap
from capgen.config import TrainConfig, config_from_dict
from capgen.flow import FlowConfig, energy_test, flow_learner, sample, trained_model

ALPHA = 0.01


def train_flow(x_train, x_valid, cfg: FlowConfig, tc: TrainConfig, device):
    "Train a flow on `x_train`; returns the model (EMA weights), the training seconds and examples/s."
    tmp = Path(tempfile.mkdtemp(prefix="capgen-flow-real-"))
    learn = flow_learner(x_train, x_valid, cfg, replace(tc, ckpt_dir=str(tmp / "run"), ckpt_every_minutes=None),
                         device=device, show_graph=False)
    learn.logger = lambda *a: None
    start = time.perf_counter()
    with learn.no_bar():
        learn.fit_cfg()
    seconds = time.perf_counter() - start
    shutil.rmtree(tmp, ignore_errors=True)
    bs = tc.batch_size
    return trained_model(learn), seconds, tc.epochs * (len(x_train) // bs) * bs / seconds


def embed(embedder, images, bs: int = 512) -> torch.Tensor:
    "Unit CLIP image embeddings of uint8 images `(n, H, W, 3)`, float32 on the CPU."
    return torch.cat([embedder.embed_images(images[i:i + bs]).float().cpu() for i in range(0, len(images), bs)])


# ---------------------------------------------------------------- the worlds: embeddings and flow settings


def shapes_world(a, log):
    """Shapes world: the default CLIP (full) or the `capgen demo --tier fast` CLIP (quick); training renders are
    images 0..n-1 of split 'train' (those `default_flow` trains on, with its 5% validation split), held-out renders
    images 0..m-1 of split 'test' (seen by neither the CLIP nor the flow)."""
    from capgen import clip
    from capgen.data import is_valid
    from capgen.shapes import ShapesWorld
    from capgen.shapes_flow import default_configs
    if a.quick:   # the CLIP of `capgen demo --tier fast`: 1,000 renders, one epoch
        ccfg, cdata, ctc = clip.default_configs()
        emb = clip.default_embedder(a.device, configs=(ccfg, replace(cdata, n_train=1_000, n_valid=100), replace(ctc, epochs=1)))
    else:
        emb = clip.default_embedder(a.device)
    n_train, n_held = (2_000, 1_000) if a.quick else (a.n_train, a.n_heldout)
    world = ShapesWorld()
    t0 = time.perf_counter()
    x = embed(emb, world.images(range(n_train), "train"))
    held = embed(emb, world.images(range(n_held), "test"))
    log(f"shapes: rendered and embedded {n_train + n_held:,} images in {time.perf_counter() - t0:.0f} s")
    v = is_valid([f"train/{i}" for i in range(n_train)], 0.05, 0)
    cfg, tc = default_configs(x.shape[1])
    if a.quick: cfg, tc = replace(cfg, width=64, depth=2), replace(tc, epochs=1, batch_size=256)
    return dict(train=x[~v], valid=x[v], held=held, cfg=cfg, tc=tc,
                what=f"CLIP: {'`capgen demo --tier fast` CLIP (1,000 renders, 1 epoch)' if a.quick else '`default_embedder()`'}; "
                     f"training renders: split 'train' 0..{n_train - 1:,} (flow validation: its 5% hash split, as "
                     f"`default_flow`); held-out renders: split 'test' 0..{n_held - 1:,}. Flow: `shapes_flow.default_configs(d)`"
                     f"{' shrunk for --quick' if a.quick else ''}.")


def digits_world(a, log):
    """Digits world: the CLIP that `capgen demo --world digits` trains on the 3,500 training digits (32 px; the
    `fast` tier's tiny one with --quick), reused from the cache when the demo trained it; flow settings of the same
    tier (`DIGITS_CONFIGS['flow']` over the flow's defaults). Training embeddings: the 'train' split; held-out: the
    'judge' and 'test' splits (1,500 digits no part trained on)."""
    from capgen.clip import Embedder
    from capgen.core import MARKER, cache_dir, cache_path
    from capgen.data import is_valid
    from capgen.digits import DIGITS_TIERS, digit_images, digit_indices, digit_split, write_digits
    from capgen.parts import merge_config, train_part
    configs = DIGITS_TIERS["fast" if a.quick else "demo"]
    root = cache_dir()
    folder = root / "digits-train-32"                       # where `digits_demo` writes the training digits
    if not (folder / "labels.json").is_file(): write_digits(folder, "train", size=32)
    part = cache_path("digits-run", configs, root) / "parts" / "clip"   # where `digits_demo` keeps its CLIP
    if (part / MARKER).is_file(): log(f"digits: the demo's CLIP from {part}")
    else:
        log(f"digits: training the CLIP as `capgen train clip --data {folder}` does, into {part} …")
        cfg = {**configs["clip"], "data": {**configs["clip"].get("data", {}), "source": str(folder)}}
        with contextlib.redirect_stdout(io.StringIO()):      # its progress bars
            train_part("clip", cfg, part, device=a.device, log=lambda *x: None)
    emb = Embedder.load(part, a.device)
    size = emb.image_size
    xt, yt = digit_split("train")
    xh = np.concatenate([digit_split("judge")[0], digit_split("test")[0]])
    x, held = embed(emb, digit_images(xt, size)), embed(emb, digit_images(xh, size))
    ids = [f"{y}/{i:04d}.png" for i, y in zip(digit_indices("train"), yt)]   # the folder's names, as build-dataset's ids
    v = is_valid(ids, 0.05, 0)
    fc = merge_config("flow", configs["flow"])
    cfg = config_from_dict(FlowConfig, {**fc["model"], "d": x.shape[1]}, "flow model")
    tc = config_from_dict(TrainConfig, {**fc["train"], "ckpt_dir": ""}, "flow train")
    return dict(train=x[~v], valid=x[v], held=held, cfg=cfg, tc=tc,
                what=f"CLIP: `capgen demo --world digits{' --tier fast' if a.quick else ''}`'s (trained on the 'train' "
                     f"digits); training embeddings: the 3,500 'train' digits (5% hash split for the flow's validation); "
                     f"held-out: the 1,500 'judge' and 'test' digits. Flow: the demo tier's flow config.")


WORLDS = {"shapes": shapes_world, "digits": digits_world}


# ---------------------------------------------------------------- caps and tests


PLACEMENTS = {"on": "centred on a held-out point (left out of the comparison)",
              "near": "centre drawn uniformly within d_max of a held-out point (left out of the comparison), as training "
                      "draws caps around data (`sample_caps_containing`) and as benchmarks/flow.py's `data_caps` does"}


def place_cap(held: torch.Tensor, i: int, s: float, place: str, min_points: int, hi: float, g):
    """A cap of size `s` for held-out point `i` placed as `place` says, holding at least `min_points` other held-out
    points: when it holds fewer, 'on' grows to the smallest size that holds them, 'near' grows by 20% at a time (a new
    centre each time). Returns (centre, d_max), or None when that needs a size above `hi`."""
    d = float(s)
    while True:
        c = held[i] if place == "on" else sample_in_cap(Cap(held[i], torch.tensor(d)), 1, generator=g)[0]
        u = (1 - held @ c).clamp_min(0)
        u[i] = float("inf")                                  # the anchor point itself is not compared
        if int((u <= d).sum()) >= min_points: return c, d
        if place == "on": d = float(u.kthvalue(min_points).values) * (1 + 1e-4) + 1e-6
        else: d = min(d * 1.2, hi) if d < hi else hi + 1
        if d > hi: return None


def subset(x: torch.Tensor, n: int, g) -> torch.Tensor:
    return x if len(x) <= n else x[torch.randperm(len(x), generator=g)[:n]]


def run_world(name: str, a, say, log, failed: list):
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    w = WORLDS[name](a, log)
    prep = time.perf_counter() - t0
    x_train, x_valid, held, cfg, tc = w["train"], w["valid"], w["held"], w["cfg"], w["tc"]
    flows = {f"on data {c:g}": replace(cfg, center_on_data=c) for c in dict.fromkeys((cfg.center_on_data, a.compare))}
    models, timing = {}, {}
    for k, c in flows.items():
        log(f"{name}: training the flow '{k}' (d = {cfg.d}, width {cfg.width}, depth {cfg.depth}) on {len(x_train):,} "
            f"embeddings for {tc.epochs} epochs …")
        models[k], *timing[k] = train_flow(x_train, x_valid, c, tc, a.device)
    per_size = 1 if a.quick else a.caps
    min_points = 50 if a.quick else a.min_points
    n_max = 200 if a.quick else a.n
    hi = cfg.size_range[1]
    anchors = iter(torch.randperm(len(held), generator=g).tolist())
    caps, grown, skipped = [], 0, 0
    for place in a.placements:
        for s in a.sizes:
            for _ in range(per_size):
                i = next(anchors)
                c = place_cap(held, i, s, place, min_points, hi, g)
                if c is None: skipped += 1; continue
                grown += c[1] != s
                caps.append((place, i, s) + c)
    say(f"## {name}", "", w["what"], "",
        f"Embedding dimension {cfg.d}; {len(x_train):,} training embeddings (+{len(x_valid):,} for the flow's "
        f"validation), {len(held):,} held-out. Flows: width {cfg.width}, depth {cfg.depth}, {tc.epochs} epochs, batch "
        f"{tc.batch_size}; *on data S*: `center_on_data` S, the share of training caps centred on data points (configured: "
        f"{cfg.center_on_data:g}); " + "; ".join(f"*{k}*: **{s:.1f} s, {v:,.0f} examples/s**" for k, (s, v) in timing.items())
        + f" (device {a.device}; the embeddings took {prep:.0f} s before them, with any CLIP training). Sampling: RK4, "
        f"{a.steps} steps. Caps: {per_size} per size "
        f"{', '.join(f'{s:g}' for s in a.sizes)} and placement: "
        + "; ".join(f"*{k}*: {PLACEMENTS[k]}" for k in a.placements) + f". Each must hold ≥ {min_points} held-out "
        f"points: {grown} cap(s) grown to hold them (marked \\*), {skipped} skipped (would need d_max > {hi:g}). Per "
        f"cap, n = min(held-out points in it, {n_max}); n held-out points (a random subset) against n samples of each "
        f"flow, n training embeddings in the cap (the floor), and n uniform samples in the cap (power check); energy "
        f"test with {a.perms:,} permutations (p ≥ {1 / (a.perms + 1):.4f}). In cap and reflected: both flows together.",
        "", "| centre | d_max (asked) | d_max | held-out in cap | train in cap | n | flows in cap | flows reflected | "
        + " | ".join(f"{k} p | {k} z" for k in flows) + " | floor p | floor z | uniform p | uniform z |",
        "|---|---:|---:|---:|---:|---:|---:|---:|" + "---:|---:|" * (len(flows) + 2))
    res = []
    for place, i, s, c, d in caps:
        cap = Cap(c, torch.tensor(d))
        inside = cap.contains(held); inside[i] = False
        h_in, t_in = held[inside], x_train[cap.contains(x_train)]
        n = min(len(h_in), n_max)
        h = subset(h_in, n, g)
        tests, in_cap, folded = {}, [], 0
        for k, model in models.items():
            xs, st = sample(model, cap.to(a.device), n, steps=a.steps, generator=g, return_stats=True)
            xs = xs.float().cpu()
            in_cap.append(cap.contains(xs).float().mean().item())
            folded += st.folded
            tests[k] = energy_test(xs, h, a.perms, g)
        tests["floor"] = energy_test(subset(t_in, n, g), h, a.perms, g) if len(t_in) >= 2 else None
        tests["unif"] = energy_test(sample_in_cap(cap, n, generator=g), h, a.perms, g)
        res.append(dict(place=place, n=n * len(models), in_cap=min(in_cap), folded=folded, **tests))
        fmt = lambda e: "— | —" if e is None else f"{e.p:.4f} | {e.z:+.1f}"
        mark = "\\*" if d != s else ""
        say(f"| {place} | {s:g} | {d:.3f}{mark} | {len(h_in):,} | {len(t_in):,} | {n} | {min(in_cap):.1%} "
            f"| {folded / (n * len(models)):.2%} | " + " | ".join(fmt(e) for e in tests.values()) + " |")
    if not res:
        say("", "No cap held enough held-out points: nothing was tested.", "")
        failed.append(f"{name}: no cap tested")
        return {}
    out = [r for r in res if r["in_cap"] < 1]
    if out: failed.append(f"{name}: flow samples outside their cap in {len(out)} of {len(res)} caps")
    summary = {}
    for place in a.placements:
        rs = [r for r in res if r["place"] == place]
        if not rs: continue
        rej = lambda k: sum(r[k] is not None and r[k].p < ALPHA for r in rs)
        med = lambda k: float(np.median([r[k].z for r in rs if r[k] is not None] or [float("nan")]))
        keys = [*models, "floor", "unif"]
        summary[place] = dict(caps=len(rs), rej={k: rej(k) for k in keys}, z={k: med(k) for k in keys})
        say("", f"**{name}, caps {place} held-out points: rejected at 1%: "
            + ", ".join(f"{k} {rej(k)}/{len(rs)}" for k in models)
            + f", train-vs-held-out floor {rej('floor')}/{len(rs)}, uniform {rej('unif')}/{len(rs)}.** Median energy z: "
            + ", ".join(f"{k} {med(k):+.1f}" for k in models) + f", floor {med('floor'):+.1f}, uniform {med('unif'):+.1f}.")
    say("", f"Flows' in-cap rate (worst cap) {min(r['in_cap'] for r in res):.1%}; reflected into the cap "
        f"{sum(r['folded'] for r in res):,} of {sum(r['n'] for r in res):,} samples.", "")
    return summary


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worlds", nargs="+", choices=list(WORLDS), default=list(WORLDS))
    p.add_argument("--quick", action="store_true", help="tiny CLIPs and flows, few renders and caps: a smoke run")
    p.add_argument("--sizes", type=float, nargs="+", default=[0.2, 0.5, 1.0], help="cap sizes d_max")
    p.add_argument("--placements", nargs="+", choices=list(PLACEMENTS), default=list(PLACEMENTS),
                   help="where caps are centred: on held-out points, or near them (as training draws caps)")
    p.add_argument("--caps", type=int, default=3, help="caps per size and placement")
    p.add_argument("--min-points", type=int, default=200, help="held-out points a cap must hold (else it is grown)")
    p.add_argument("--n", type=int, default=500, help="most points compared per cap")
    p.add_argument("--perms", type=int, default=999, help="permutations per energy test (p-values down to 1/(perms+1))")
    p.add_argument("--steps", type=int, default=32, help="RK4 steps of the sampler")
    p.add_argument("--n-train", type=int, default=30_000, help="shapes: training renders")
    p.add_argument("--n-heldout", type=int, default=10_000, help="shapes: held-out renders")
    p.add_argument("--compare-center-on-data", dest="compare", type=float, default=0.5,
                   help="also train each world's flow with this share of its training caps centred on data points")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "flow_real.md")
    a = p.parse_args(argv)
    t_start = time.perf_counter()
    args = " ".join(sys.argv[1:] if argv is None else argv)
    lines = [f"`python benchmarks/flow_real.py{' ' + args if args else ''}` — Machine: {cpu_model()}, "
             f"{torch.get_num_threads()} torch threads, device {a.device}"
             f"{' (' + torch.cuda.get_device_name() + ')' if a.device.startswith('cuda') else ''}; Python "
             f"{platform.python_version()}, torch {torch.__version__}, capgen {capgen.__version__}.", ""]
    failed, summary = [], {}

    def say(*text):
        print(*text, sep="\n", flush=True)
        lines.extend(text)

    def log(text): print(text, flush=True)

    for name in a.worlds:
        summary[name] = run_world(name, a, say, log, failed)
    names = list(dict.fromkeys(k for by in summary.values() for s in by.values() for k in s["rej"] if k.startswith("on data")))
    say("## Summary", "", "| world | caps centred | caps | " + " | ".join(f"rejected at 1%: {k}" for k in names)
        + " | floor (train vs held-out) | uniform | " + " | ".join(f"median energy z: {k}" for k in names)
        + " | floor | uniform |", "|---|---|---:|" + "---:|" * (2 * len(names) + 4))
    for name, by in summary.items():
        for place, s in by.items():
            keys = names + ["floor", "unif"]
            say(f"| {name} | {place} | {s['caps']} | " + " | ".join(str(s["rej"].get(k, "—")) for k in keys) + " | "
                + " | ".join(f"{s['z'][k]:+.1f}" if k in s["z"] else "—" for k in keys) + " |")
    say("", f"Total wall time {time.perf_counter() - t_start:.0f} s. Goal: every flow sample inside its cap: "
        f"{'NOT met: ' + '; '.join(failed) if failed else 'met'}.")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(lines) + "\n")
    if failed: sys.exit("goals not met: " + "; ".join(failed))


if __name__ == "__main__":
    main()
