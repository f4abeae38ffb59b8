"""Benchmark: rendering a 150-frame animation of a flow on S², against the reference project's way.

It prints, in one run, the wall time to render and write a 150-frame, 30 fps, 400 × 400 animation of the same
trained model (camera orbiting 180° while t runs from 0 to 1):
- capgen: `capgen.field.animate_flow` (globe drawn on a 2-d axis, field and particles at each time, frames
  kept in memory, then written as mp4 and gif; and mp4 alone);
- the reference's method: a matplotlib 3-d axis with a translucent sphere surface, the 3-d quiver recreated every
  frame (3-d quivers cannot be updated in place) with the field re-evaluated at that frame's time, driven by
  `FuncAnimation` and written by `FFMpegWriter` (same ffmpeg binary, same size and frame rate), with as many
  arrows as capgen draws and with the reference's default of 100.

Run: `python benchmarks/field.py` (writes `benchmarks/results/field.md`, shown on the field docs page).
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

import capgen
from _report import cpu_model
from capgen.field import animate_flow, arrow_sites, field_at, media_info, spiral_mixture
from capgen.flow import FlowConfig, flow_learner, trained_model
from capgen.config import TrainConfig


def reference_render(model, path: Path, frames: int, fps: int, size: int, n_arrows: int) -> float:
    "The reference's animation loop, rebuilt here: 3-d axes, quiver recreated per frame, FuncAnimation + ffmpeg."
    import imageio_ffmpeg
    from matplotlib.animation import FFMpegWriter, FuncAnimation
    plt.rcParams["animation.ffmpeg_path"] = imageio_ffmpeg.get_ffmpeg_exe()
    start = time.perf_counter()
    x = arrow_sites(model, None, n_arrows)
    fig = plt.figure(figsize=(size / 100, size / 100), dpi=100)
    ax = fig.add_subplot(projection="3d")
    u, v = np.mgrid[0:2 * np.pi:20j, 0:np.pi:20j]
    ax.plot_surface(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="lightblue", alpha=0.2)
    ax.set_axis_off()
    state = {"q": None}

    def draw(i):
        t = i / (frames - 1)
        vel = field_at(model, x, t).numpy()
        vel = vel / np.maximum(np.linalg.norm(vel, axis=-1, keepdims=True), 1e-12)
        if state["q"] is not None: state["q"].remove()
        state["q"] = ax.quiver(*x.numpy().T, *vel.T, length=0.15, color="C0")
        ax.view_init(elev=30, azim=180 * i / (frames - 1))
        return (state["q"],)

    anim = FuncAnimation(fig, draw, frames=frames, blit=False)
    anim.save(str(path), writer=FFMpegWriter(fps=fps, codec="libx264", extra_args=["-pix_fmt", "yuv420p"]), dpi=100)
    plt.close(fig)
    return time.perf_counter() - start


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--size", type=int, default=400)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "field.md")
    args = p.parse_args(argv)
    world = spiral_mixture()
    g = torch.Generator().manual_seed(0)
    train, valid = world.sample(20_000, generator=g).float(), world.sample(1024, generator=g).float()
    tmp = Path(tempfile.mkdtemp())
    learn = flow_learner(train, valid, FlowConfig(d=3, conditional=False, width=128, depth=3),
                         TrainConfig(epochs=2, batch_size=512, lr=3e-3, ckpt_dir=str(tmp / "ckpt")))
    with learn.no_bar(), learn.no_logging(): learn.fit_cfg()
    model = trained_model(learn)
    rows = []
    for label, formats in (("capgen `animate_flow`, mp4 + gif", ("mp4", "gif")), ("capgen `animate_flow`, mp4", ("mp4",))):
        a = animate_flow(model, tmp / "ours", frames=args.frames, size=args.size, formats=formats, progress=False)
        assert media_info(a.paths["mp4"]) == (args.frames, (args.size, args.size))
        rows.append((label, 250, a.seconds))
        print(f"{label}: {a.seconds:.1f} s", flush=True)
    for n in (250, 100):
        label = f"reference loop (3-d quiver per frame, FuncAnimation), mp4"
        s = reference_render(model, tmp / f"ref{n}.mp4", args.frames, 30, args.size, n)
        assert media_info(tmp / f"ref{n}.mp4")[0] == args.frames
        rows.append((label, n, s))
        print(f"{label}, {n} arrows: {s:.1f} s", flush=True)
    ours = rows[1][2]
    lines = [
        f"Rendering a {args.frames}-frame, 30 fps, {args.size} × {args.size} animation of a trained 3-d flow "
        f"(camera orbit 180°, t from 0 to 1; goal: under 60 s). "
        f"Machine: {cpu_model()}, {torch.get_num_threads()} torch threads; "
        f"Python {platform.python_version()}, torch {torch.__version__}, matplotlib {matplotlib.__version__}, "
        f"capgen {capgen.__version__}.",
        "",
        "| renderer | arrows | seconds | per frame (ms) | vs capgen mp4 |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, n, s in rows:
        lines.append(f"| {label} | {n} | {s:.1f} | {1000 * s / args.frames:.0f} | {s / ours:.2f}× |")
    lines += ["", "capgen's frames also carry 1500 particles, the data and the cap's outline; the reference's carry "
              "only the arrows (normalised to one length, drawn on both sides of the sphere)."]
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    if ours >= 60: sys.exit(f"goal not met: {ours:.1f} s for the animation (goal: under 60 s)")


if __name__ == "__main__":
    main()
