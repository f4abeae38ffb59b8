"""Benchmark: cap-conditioned spherical flow matching against known truth (von Mises–Fisher mixtures).

Prints, in one run:
- training examples/s of each model, and a table of the training cost (seconds, examples seen) per dimension;
- unconditional 3-D mixture of 4 vMFs: test NLL against the true entropy (goal: within 0.05 nats);
- cap-conditioned models in 3, 64, 512 and 768 dimensions (512 and 768: the embeddings of ViT-B/32 and ViT-L/14
  CLIPs), per cap size d_max: in-cap rate, fraction of samples the solver had to reflect back into the cap, an
  energy two-sample test against exact samples of the mixture restricted to the cap (median p-value over 9,999
  permutations, how many caps fail at 1%, and the median z-score of the energy distance against its permutations,
  which ranks samples whose p-values are all at the floor), the gap in mean true log density between model and
  exact samples (z-score), the mass in the outer shell of the cap that holds 5% of the true mass (a distorting
  in-cap guarantee would pile mass there), and the same tests for uniform samples in the cap (the power check);
- the baseline: rejection sampling from the unconditional model, acceptance rate vs d_max, against the true
  mass of the cap and the cap-conditioned model's measured in-cap rate in the same caps (d = 3, one mixture for
  both models); in higher dimensions, rejection from a perfect unconditional model (exact samples of the
  mixture), counted over 10^6 draws per cap;
- d = 768, 10,000 samples in one cap: wall time and NFE per solver, and quality vs NFE;
- the goals, met or not: in 512 and 768 dimensions every sample in its cap, at most 2 of the 20 caps rejected at
  1%, mean |z| of the log-density gap ≤ 2, outer-shell mass within 5% ± 1.5 points in every size class; in every
  dimension at most 1% of samples reflected; the 768-d model trained within 15 minutes.

Run: `python benchmarks/flow.py` (writes `benchmarks/results/flow.md`, shown in the flow docs page);
`--quick` for a fast smoke run; `--dims 512 768` for some dimensions only; `--path polar --out
benchmarks/results/flow_polar.md` trains the cap-conditioned models on polar paths instead of great circles. On a
GPU (`--device cuda`, the default when one is present) the cap-conditioned models train on `--scale` (default 4)
times the points. Exits with status 1, after writing the results, when a goal is not met (those above, the
unconditional NLL gap, and every cap-conditioned sample inside its cap in 3 and 64 dimensions).
"""
from __future__ import annotations

import argparse
import math
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

import capgen
from _report import cpu_model
from capgen.caps import Cap, sample_in_cap
from capgen.flow import FlowConfig, energy_test, flow_learner, log_likelihood, rejection_sample, sample, trained_model
from capgen.sphere import log_surface_area
from capgen.config import TrainConfig
from capgen.vmf import random_mixture


# The cap-conditioned models: the mixture's concentrations and the network per dimension; 512 and 768 are the
# dimensions of real CLIPs (ViT-B/32, ViT-L/14).
SETTINGS = {3: dict(kappa=(8.0, 30.0), width=128, depth=3, n=200_000, epochs=12, bs=512),
            64: dict(kappa=(16.0, 64.0), width=256, depth=4, n=200_000, epochs=8, bs=512),
            512: dict(kappa=(128.0, 512.0), width=384, depth=3, n=200_000, epochs=12, bs=512),
            768: dict(kappa=(192.0, 768.0), width=384, depth=3, n=200_000, epochs=12, bs=512)}
GOALS = dict(reflected=0.01, rejected=2, abs_z=2.0, shell=(0.035, 0.065), minutes_768=15.0)


def train(mix, cfg: FlowConfig, n_train: int, epochs: int, bs: int, lr: float, seed: int = 0, device="cpu",
          timing: dict | None = None):
    """Train a flow on exact samples of `mix`; returns the model (EMA weights) and training examples/s (and puts the
    training seconds in `timing[cfg.d]`)."""
    g = torch.Generator().manual_seed(seed)
    x_train, x_valid = mix.sample(n_train, generator=g), mix.sample(2048, generator=g)
    tmp = Path(tempfile.mkdtemp())
    tc = TrainConfig(epochs=epochs, batch_size=bs, lr=lr, schedule="warmup_cosine", ema_decay=0.999,
                     ckpt_dir=str(tmp / "run"), seed=seed)
    learn = flow_learner(x_train, x_valid, cfg, tc, device=device, show_graph=False)
    start = time.perf_counter()
    with learn.no_bar():
        learn.fit_cfg()
    seconds = time.perf_counter() - start
    shutil.rmtree(tmp, ignore_errors=True)
    if timing is not None: timing[cfg.d] = seconds
    return trained_model(learn), epochs * (n_train // bs) * bs / seconds


def data_caps(mix, sizes, per_size: int, g) -> Cap:
    "`per_size` caps of each size, centred uniformly within d_max of a fresh data point (as a prompt's cap would be)."
    d_max = torch.tensor(sizes).repeat_interleave(per_size)
    around = mix.sample(len(d_max), generator=g)
    return Cap(sample_in_cap(Cap(around, d_max), 1, generator=g)[:, 0], d_max)


def compare(mix, cap: Cap, xs, truth, g, n_perm: int):
    "Quality of samples `xs` in one cap against exact samples `truth`."
    xs, n = xs.cpu(), len(xs)
    lt = mix.log_prob_in_cap(truth.double(), cap)
    lm = mix.log_prob_in_cap(xs.double(), cap)
    z = ((lm.mean() - lt.mean()) / torch.sqrt(lm.var() / n + lt.var() / len(lt))).item()
    u_t, u_m = cap.distance(truth), cap.distance(xs)
    edge = torch.quantile(u_t, 0.95)
    e = energy_test(xs, truth, n_perm, g)
    return dict(in_cap=cap.contains(xs).float().mean().item(), p=e.p, ez=e.z, z=z, shell=(u_m > edge).float().mean().item())


def exact_rejection(mix, cap: Cap, tries: int, g, chunk: int = 50_000) -> int:
    "How many of `tries` exact samples of `mix` (a perfect unconditional model) land in `cap`: rejection's best case."
    kept = 0
    for start in range(0, tries, chunk):
        kept += int(cap.contains(mix.sample(min(chunk, tries - start), generator=g)).sum())
    return kept


def cap_table(mix, model, sizes, per_size, n, g, n_perm, **kw):
    caps = data_caps(mix, sizes, per_size, g)
    xs, st = sample(model, caps, n, generator=g, return_stats=True, **kw)
    rows = []
    for i in range(len(caps)):
        cap = caps[i]
        truth = mix.sample_in_cap(cap, n, generator=g)
        r = compare(mix, cap, xs[i], truth, g, n_perm)
        u = compare(mix, cap, sample_in_cap(cap, n, generator=g), truth, g, n_perm)
        r.update(d_max=cap.d_max.item(), p_unif=u["p"], ez_unif=u["ez"], z_unif=u["z"], log_mass=mix.log_mass(cap).item())
        rows.append(r)
    return rows, st


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small models and few caps: a smoke run")
    p.add_argument("--dims", type=int, nargs="+", default=[3, 64, 512, 768], choices=sorted(SETTINGS))
    p.add_argument("--sizes", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.5, 1.0])
    p.add_argument("--caps", type=int, default=4, help="caps per size")
    p.add_argument("--n", type=int, default=500, help="samples per cap")
    p.add_argument("--perms", type=int, default=9_999, help="permutations per energy test (p-values down to 1/(perms+1))")
    p.add_argument("--tries", type=int, default=1_000_000, help="draws per cap for rejection from exact samples (d > 3)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--scale", type=int, default=None,
                   help="train the cap-conditioned models on this many times the points (default: 1 on a CPU, 4 on a GPU)")
    p.add_argument("--path", choices=["geodesic", "polar"], default="geodesic",
                   help="training paths of the cap-conditioned models in caps up to a hemisphere (FlowConfig.path)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "flow.md")
    args = p.parse_args(argv)
    q = args.quick
    n_perm = 999 if q else args.perms
    g = torch.Generator().manual_seed(0)
    flags = ((" --quick" if q else "") + (f" --dims {' '.join(map(str, args.dims))}" if args.dims != [3, 64, 512, 768] else "")
             + (f" --path {args.path}" if args.path != "geodesic" else ""))
    lines = [f"`python benchmarks/flow.py{flags}` — Machine: {cpu_model()}, "
             f"{torch.get_num_threads()} torch threads, device {args.device}"
             f"{' (' + torch.cuda.get_device_name() + ')' if args.device.startswith('cuda') else ''}; Python {platform.python_version()}, "
             f"torch {torch.__version__}, capgen {capgen.__version__}.", ""]

    failed = []

    def say(*text):
        print(*text, flush=True)
        lines.extend(text)

    # 1. unconditional 3-D
    mix3 = random_mixture(3, k=4, kappa=(8.0, 30.0), generator=torch.Generator().manual_seed(0))
    plain3, speed = train(mix3, FlowConfig(d=3, conditional=False, width=128, depth=3),
                          20_000 if q else 200_000, 2 if q else 12, 512, 3e-3, device=args.device)
    test = mix3.sample(10_000, generator=g)
    lp, _ = log_likelihood(plain3, test, steps=32)
    nll, nll_se = -lp.mean().item(), lp.std().item() / math.sqrt(len(lp))
    h, h_se = mix3.entropy(1_000_000, generator=g)
    gap = nll - h
    say("## Unconditional, 3-D mixture of 4 vMFs", "",
        f"Training: {speed:,.0f} examples/s. Test NLL {nll:.4f} ± {nll_se:.4f} nats (10,000 test points, RK4 32 "
        f"steps, exact divergence); true entropy {h:.4f} ± {h_se:.4f}; uniform {log_surface_area(3):.4f}. "
        f"Gap {gap:+.4f} ± {math.hypot(nll_se, h_se):.4f} nats: goal |gap| < 0.05 "
        f"{'met' if abs(gap) < 0.05 else 'NOT met'}.", "")
    if abs(gap) >= 0.05: failed.append(f"unconditional NLL gap {gap:+.4f} nats (goal: |gap| < 0.05)")

    # 2. cap-conditioned per dimension
    scale = args.scale or (4 if args.device.startswith("cuda") else 1)
    models, timing, speeds, quality, seen = {}, {}, {}, {}, {}
    for d in args.dims:
        s = SETTINGS[d]
        n_train = s["n"] // 10 if q else s["n"] * scale
        # d = 3: the unconditional model's mixture, so that the rejection baseline below compares like with like
        mix = mix3 if d == 3 else random_mixture(d, k=4, kappa=s["kappa"], generator=torch.Generator().manual_seed(d))
        cfg = FlowConfig(d=d, width=s["width"] // (2 if q else 1), depth=s["depth"], path=args.path)
        model, speed = train(mix, cfg, n_train, 1 if q else s["epochs"], s["bs"], 2e-3, device=args.device, timing=timing)
        models[d], speeds[d] = (mix, model), speed
        seen[d] = (1 if q else s["epochs"]) * (n_train // s["bs"]) * s["bs"]
        rows, st = cap_table(mix, model, args.sizes, 1 if q else args.caps, args.n, g, n_perm, method="rk4", steps=32)
        quality[d] = (rows, st)
        say(f"## Cap-conditioned, d = {d}: mixture of 4 vMFs, κ in {s['kappa']}", "",
            f"Model: width {model.cfg.width}, depth {model.cfg.depth}, {model.cfg.path} paths"
            + (f" (log-u error weight `radial_weight` {model.cfg.radial_weight:g})" if model.cfg.path == "polar" else "")
            + f"; trained on "
            f"{n_train:,} points "
            f"for {1 if q else s['epochs']} epochs at {speed:,.0f} examples/s. Sampling: RK4, 32 steps "
            f"({st.nfe:.0f} evaluations per sample); {args.n} samples per cap, "
            f"{1 if q else args.caps} caps per size around data points. {st.folded} of "
            f"{len(rows) * args.n:,} samples left their cap during integration and were reflected back in.", "",
            f"| d_max | log P(cap) | in cap | energy p (median of {1 if q else args.caps}) | caps with p < 0.01 "
            "| energy z (median) | log-density gap z (mean abs) | outer-shell mass (true 5%) "
            "| uniform-in-cap: p < 0.01 | uniform: energy z (median) | uniform: log-density z (mean abs) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        if min(r["in_cap"] for r in rows) < 1 and d < 512: failed.append(f"d = {d}: samples outside their cap")
        for v in args.sizes:
            rs = [r for r in rows if abs(r["d_max"] - v) < 1e-6 * v]
            med = lambda k: sorted(r[k] for r in rs)[len(rs) // 2]
            say(f"| {v:g} | {sum(r['log_mass'] for r in rs) / len(rs):.1f} | {min(r['in_cap'] for r in rs):.1%} "
                f"| {med('p'):.4f} | {sum(r['p'] < 0.01 for r in rs)}/{len(rs)} | {med('ez'):+.1f} "
                f"| {sum(abs(r['z']) for r in rs) / len(rs):.2f} | {sum(r['shell'] for r in rs) / len(rs):.1%} "
                f"| {sum(r['p_unif'] < 0.01 for r in rs)}/{len(rs)} | {med('ez_unif'):+.1f} "
                f"| {sum(abs(r['z_unif']) for r in rs) / len(rs):.1f} |")
        say("")

    # 3. baseline: rejection from the unconditional 3-D model, and from exact samples in higher dimensions
    say("## Baseline: rejection sampling from the unconditional model (d = 3)", "",
        "Both models learned the same mixture; per cap, 200 samples by each. Rejection draws from the unconditional "
        "model (RK4, 16 steps) and keeps what falls in the cap; the cap-conditioned model samples the cap directly "
        "(RK4, 32 steps).", "",
        "| d_max | rejection: acceptance | true mass of the cap | rejection: evaluations per kept sample "
        "| cap-conditioned: in-cap rate | cap-conditioned: evaluations per sample |",
        "|---:|---:|---:|---:|---:|---:|")
    for v in args.sizes:
        caps = data_caps(mix3, [v], 1, g)
        x, rate = rejection_sample(plain3, caps[0].to(args.device), 200, max_tries=20_000, steps=16)
        per_draw = sample(plain3, None, 2, steps=16, generator=g, return_stats=True)[1].nfe
        if 3 in models:
            xc, st = sample(models[3][1], caps[0].to(args.device), 200, steps=32, generator=g, return_stats=True)
            cond = f"{caps[0].contains(xc.cpu()).float().mean().item():.1%} | {st.nfe:.0f}"
        else:
            cond = "— | —"
        cost = f"{per_draw / rate:,.0f}" if rate > 0 else "∞"
        say(f"| {v:g} | {rate:.2%} | {mix3.log_mass(caps[0]).exp().item():.2%} | {cost} | {cond} |")
    say("")
    high = [d for d in args.dims if d > 3]
    if high:
        tries = 100_000 if q else args.tries
        say("## Rejection from a perfect unconditional model (d > 3)", "",
            f"Rejection's best case: {tries:,} exact samples of the mixture per cap (one cap per size, around a data "
            "point), counted in the cap. A learned unconditional model can only do worse.", "",
            "| d | d_max | log P(cap) | accepted | draws per accepted sample (1 / P) |", "|---:|---:|---:|---:|---:|")
        hopeless = {}
        for d in high:
            mix = models[d][0]
            for v in args.sizes:
                cap = data_caps(mix, [v], 1, g)[0]
                kept, lm = exact_rejection(mix, cap, tries, g), mix.log_mass(cap).item()
                k = -lm / math.log(10)              # 1 / P = 10^k, far beyond a float's range for small caps
                say(f"| {d} | {v:g} | {lm:.1f} | {kept:,} | {10 ** k:,.1f} |" if k < 6 else f"| {d} | {v:g} | {lm:.1f} | {kept:,} | 10^{k:.0f} |")
                if kept == 0: hopeless.setdefault(d, []).append(v)
        said = "; ".join(f"in {d} dimensions at d_max {', '.join(f'{v:g}' for v in vs)}" for d, vs in hopeless.items())
        say("", (f"Rejection accepted nothing in {tries:,} draws {said}: there the cap-conditioned model is the only way "
                 "to sample the cap. Where the cap holds a sizeable share of the data, rejection works and costs "
                 "1 / P(cap) draws per sample." if hopeless else
                 f"Every cap accepted some of the {tries:,} draws: at these sizes rejection works, at 1 / P(cap) draws "
                 "per sample."), "")

    # 4. solvers at 768-d
    if 768 in models:
        mix, model = models[768]
        cap = data_caps(mix, [0.5], 1, g)[0]
        n = 2_000 if q else 10_000
        truth = mix.sample_in_cap(cap, 1000, generator=g)
        say("## Solvers, d = 768, one cap (d_max 0.5)", "",
            f"Wall time for {n:,} samples (one batch), and quality of the first 1,000 against 1,000 exact samples.", "",
            f"| solver | NFE per sample | wall time (s) | in cap | reflected | energy p ({n_perm:,} permutations) "
            "| energy z | log-density gap z |",
            "|---|---:|---:|---:|---:|---:|---:|---:|")
        timed = [("euler", dict(steps=32)), ("midpoint", dict(steps=16)), ("rk4", dict(steps=8)),
                 ("dopri5", dict(atol=1e-3, rtol=1e-3))]
        sweep = [("euler", dict(steps=s)) for s in (2, 4, 8, 16)] + [("midpoint", dict(steps=s)) for s in (2, 4, 8)]
        sweep += [("rk4", dict(steps=s)) for s in (1, 2, 4, 16)] + [("dopri5", dict(atol=a, rtol=a)) for a in (1e-1, 1e-2)]

        def row(method, kw, count):
            xs, st = sample(model, cap, count, method=method, generator=g, return_stats=True, **kw)
            r = compare(mix, cap, xs[:1000], truth, g, n_perm)
            label = method + (f", {kw['steps']} steps" if "steps" in kw else f", tol {kw['atol']:g}")
            wall = f"{st.seconds:.1f}" if count == n else "—"
            return st.nfe, (f"| {label} | {st.nfe:.1f} | {wall} | {r['in_cap']:.1%} | {st.folded / count:.2%} "
                            f"| {r['p']:.4f} | {r['ez']:+.1f} | {r['z']:+.2f} |")
        rows = [row(m, kw, n) for m, kw in timed] + [row(m, kw, 1000) for m, kw in sweep]
        say(*[text for _, text in sorted(rows, key=lambda r: r[0])])
        say("", "Rows with a wall time sampled all the points; the others (the quality-vs-NFE sweep) 1,000. "
            "Pick the fewest evaluations whose energy z and log-density z look like the rows above them.", "")
    # 5. training cost per dimension, and the goals of the cap-conditioned models
    if quality:
        say("## Training cost", "", f"Cap-conditioned models, {args.device}; the same batch size (512), learning rate and schedule.", "",
            "| d | width × depth | parameters | examples seen | seconds | examples/s |", "|---:|---|---:|---:|---:|---:|")
        for d, (mix, model) in models.items():
            say(f"| {d} | {model.cfg.width} × {model.cfg.depth} | {sum(p.numel() for p in model.parameters()):,} "
                f"| {seen[d]:,} | {timing[d]:.0f} | {speeds[d]:,.0f} |")
        say("")
        goals = []                                               # (goal, measured, met)
        for d, (rows, st) in quality.items():
            share = st.folded / (len(rows) * args.n)
            goals.append((f"d = {d}: samples reflected ≤ {GOALS['reflected']:.0%}", f"{share:.2%}", share <= GOALS["reflected"]))
            if d < 512: continue
            inside = min(r["in_cap"] for r in rows)
            goals.append((f"d = {d}: in cap 100%", f"{inside:.1%}", inside == 1))
            rej = sum(r["p"] < 0.01 for r in rows)
            goals.append((f"d = {d}: caps rejected at 1% ≤ {GOALS['rejected']} of {len(rows)}", f"{rej}", rej <= GOALS["rejected"]))
            absz = sum(abs(r["z"]) for r in rows) / len(rows)
            goals.append((f"d = {d}: mean absolute z of the log-density gap ≤ {GOALS['abs_z']:g}", f"{absz:.2f}",
                          absz <= GOALS["abs_z"]))
            lo, hi = GOALS["shell"]
            shells = [sum(r["shell"] for r in rows if abs(r["d_max"] - v) < 1e-6 * v) / max(1, sum(abs(r["d_max"] - v) < 1e-6 * v for r in rows))
                      for v in args.sizes]
            goals.append((f"d = {d}: outer-shell mass {lo:.1%}–{hi:.1%} in every size class",
                          " / ".join(f"{x:.1%}" for x in shells), all(lo <= x <= hi for x in shells)))
        if 768 in timing:
            minutes = timing[768] / 60
            goals.append((f"d = 768: trains in ≤ {GOALS['minutes_768']:g} minutes ({args.device})", f"{minutes:.1f}",
                          minutes <= GOALS["minutes_768"]))
        say("## Goals", "", "| goal | measured | met |", "|---|---:|---|",
            *[f"| {goal} | {value} | {'yes' if ok else '**no**'} |" for goal, value, ok in goals], "")
        if not q: failed.extend(goal for goal, _, ok in goals if not ok)
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    if failed: sys.exit("goals not met: " + "; ".join(failed))


if __name__ == "__main__":
    main()
