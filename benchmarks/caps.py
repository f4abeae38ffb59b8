"""Benchmark: exact sampling inside a cap in 768-d, against the floor and a bucket-table sampler.

For each cap size it prints, in one run:
- points/s of `capgen.caps.sample_in_cap` (one cap, n points, float32);
- points/s of the floor: `n` uniform points on the whole sphere (one d-dimensional normal vector each);
- points/s of a histogram-table sampler built like the reference implementation's (8192 buckets over the
  height along the axis, inverse CDF with linear interpolation), then the same point construction;
- the KS distance of each sampler's cosine distances from the exact distribution (CDF from
  `log_area_fraction`), and the 1% critical value for that sample size.

Run: `python benchmarks/caps.py` (writes `benchmarks/results/caps.md`, shown in the caps docs page).
"""
from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path

import torch

import capgen
from _report import cpu_model
from capgen.caps import Cap, cap_distance_cdf, sample_cap_distance, sample_in_cap
from capgen.sphere import sample_uniform


class BucketTable:
    """The reference approach: the density of the height `h = x·axis` on `n` equally spaced buckets of [-1, 1].

    Built here at its best: log-densities in float64 and each cap's CDF normalised in log space, so no bucket
    underflows (a float32 softmax over the whole sphere, e^-257 at 768-d and d_max = 0.3, would leave small
    caps empty); what remains is the error of the buckets themselves."""

    def __init__(self, d: int, n: int = 8192):
        h = torch.linspace(-1, 1, n, dtype=torch.float64)
        self.logits = (d - 3) / 2 * torch.log1p(-h * h)  # area of the band at height h, per unit height
        self.logits[0] = self.logits[-1] = -math.inf
        self.h, self.n = h, n

    def cap_cdf(self, d_max: float) -> tuple[int, torch.Tensor]:
        "Index of the last bucket inside the cap (h <= d_max - 1), and the table's CDF at buckets 0..last."
        last = int(math.floor(d_max / 2 * (self.n - 1)))
        kept = self.logits[: last + 1]
        cum = torch.cumsum(torch.exp(kept - kept.max()), 0) if last > 0 else torch.ones(1, dtype=torch.float64)
        return last, cum / cum[-1]

    def sample_distance(self, d_max: float, k: int, generator=None) -> torch.Tensor:
        "Cosine distances `u = 1 + h` of `k` points in the cap of size `d_max` placed at the pole h = -1."
        last, cum = self.cap_cdf(d_max)
        if last == 0:                                     # the cap is smaller than one bucket: only its centre
            return torch.zeros(k, dtype=torch.float64)
        r = torch.rand(k, generator=generator, dtype=torch.float64)
        i = torch.searchsorted(cum, r).clamp(1, last)     # bucket 0 has probability 0
        frac = ((r - cum[i - 1]) / (cum[i] - cum[i - 1]).clamp_min(1e-300)).clamp(0, 1)
        return 1 + self.h[i - 1] + frac * (self.h[i] - self.h[i - 1])

    def cdf_error(self, d: int, d_max: float, per_bucket: int = 16) -> float:
        "Exact sup distance between the table's CDF (linear within buckets) and the true one: no sampling noise."
        last, cum = self.cap_cdf(d_max)
        if last == 0:
            return 1.0                                    # all mass at u = 0, where the true CDF is 0
        t = torch.linspace(0, 1, per_bucket + 1, dtype=torch.float64)[:, None]
        u = 1 + self.h[:last] + t * (self.h[1 : last + 1] - self.h[:last])
        table = cum[:-1] + t * (cum[1:] - cum[:-1])
        return float((table - cap_distance_cdf(d, d_max, u)).abs().max())


def table_points(table: BucketTable, center: torch.Tensor, d_max: float, k: int, generator=None):
    "Reference-style points: a distance from the table, then a random direction orthogonalised against the centre."
    u = table.sample_distance(d_max, k, generator).to(center.dtype)
    v = torch.randn(k, center.shape[-1], generator=generator, dtype=center.dtype)
    v = v - (v @ center)[:, None] * center
    v = v / v.norm(dim=-1, keepdim=True)
    x = (1 - u)[:, None] * center + torch.sqrt(u * (2 - u))[:, None] * v
    return x / x.norm(dim=-1, keepdim=True)


def ks_distance(d: int, d_max: float, u: torch.Tensor) -> float:
    "Sup distance between the empirical CDF of `u` and the exact CDF of the cosine distance in the cap."
    u = torch.sort(u.double()).values
    cdf = cap_distance_cdf(d, d_max, u)
    k = u.numel()
    hi = torch.arange(1, k + 1, dtype=torch.float64) / k
    return float(torch.maximum(hi - cdf, cdf - (hi - 1 / k)).max())


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--d", type=int, default=768)
    p.add_argument("--n", type=int, default=100_000, help="points per timing")
    p.add_argument("--n-ks", type=int, default=200_000, help="samples for each KS distance")
    p.add_argument("--sizes", type=float, nargs="+", default=[1e-6, 1e-3, 0.05, 0.3, 1.0, 1.7])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "caps.md")
    args = p.parse_args(argv)

    d, n = args.d, args.n
    g = torch.Generator().manual_seed(0)
    center = sample_uniform(1, d, generator=g)[0]
    table = BucketTable(d)
    floor = best_time(lambda: sample_uniform(n, d, generator=g), args.repeats)
    crit = 1.628 / math.sqrt(args.n_ks)  # 1% critical value of the one-sample KS statistic
    rows = []
    for v in args.sizes:
        cap = Cap(center, v)
        t_cap = best_time(lambda: sample_in_cap(cap, n, generator=g), args.repeats)
        t_tab = best_time(lambda: table_points(table, center, v, n, generator=g), args.repeats)
        ks_cap = ks_distance(d, v, sample_cap_distance(d, torch.full((args.n_ks,), v, dtype=torch.float64), g))
        ks_tab = ks_distance(d, v, table.sample_distance(v, args.n_ks, g))
        err_tab = table.cdf_error(d, v)
        rows.append((v, n / t_cap, n / floor, t_cap / floor, n / t_tab, ks_cap, ks_tab, err_tab))
        print(f"d_max={v:g}: sample_in_cap {t_cap / floor:.2f}x floor, KS {ks_cap:.2e} vs table {ks_tab:.2e}", flush=True)

    lines = [
        f"`python benchmarks/caps.py` — d = {d}, float32, {n:,} points per timing (best of {args.repeats}), "
        f"KS over {args.n_ks:,} distances (1% critical value {crit:.4f}).",
        "",
        f"Machine: {cpu_model()}, {torch.get_num_threads()} torch threads; "
        f"Python {platform.python_version()}, torch {torch.__version__}, capgen {capgen.__version__}.",
        "",
        "| d_max | sample_in_cap (pts/s) | floor: uniform on sphere (pts/s) | sample_in_cap / floor time "
        "| 8192-bucket table (pts/s) | KS sample_in_cap | KS table | table CDF error (exact) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for v, r_cap, r_floor, ratio, r_tab, ks_cap, ks_tab, err_tab in rows:
        lines.append(f"| {v:g} | {r_cap:,.0f} | {r_floor:,.0f} | {ratio:.2f}x | {r_tab:,.0f} "
                     f"| {ks_cap:.2e} | {ks_tab:.2e} | {err_tab:.2e} |")
    worst = max(r[3] for r in rows)
    passed = sum(r[5] < crit for r in rows)
    lines += ["", f"Speed goal, within 1.5x of the floor: worst ratio {worst:.2f}x ({'met' if worst <= 1.5 else 'NOT met'}). "
              f"Accuracy: sample_in_cap is exact, its KS distance is sampling noise (below the 1% critical value at "
              f"{passed} of {len(rows)} sizes); the table's own CDF is off by {min(r[7] for r in rows):.1e} to "
              f"{max(r[7] for r in rows):.1e} (exact, from its buckets), so it is less accurate at every size where "
              f"that error exceeds the noise: {sum(r[7] > r[5] for r in rows)} of {len(rows)}."]
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    if worst > 1.5: sys.exit(f"goal not met: worst speed ratio {worst:.2f}x (goal: within 1.5x of the floor)")


if __name__ == "__main__":
    main()
