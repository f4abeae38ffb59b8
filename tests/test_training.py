"""Training as users run it: the example script `examples/train_toy.py` in one process, killed from outside and
resumed, and in two processes under `accelerate launch` (gloo on CPU), checked against one process."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from capgen.checkpoints import list_checkpoints, read_checkpoint

# Two processes must end with bit-identical weights (checked at every save); against one process with the same
# global batch they differ only by the order of float32 sums in the gradient all-reduce: |Δw| ≲ steps × lr × ε.
DDP_VS_ONE_PROCESS_ATOL = 1e-6
FLAGS = ["--epochs", "3", "--batch-size", "64", "--lr", "3e-3", "--ckpt-every-minutes", "none"]


SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "train_toy.py"


def script() -> list[str]:
    "The command that runs the example script, as `python examples/train_toy.py` does from the repository root."
    assert SCRIPT.is_file(), f"{SCRIPT} is missing"
    return [sys.executable, str(SCRIPT)]


def env() -> dict:
    return {**os.environ, "WANDB_MODE": "disabled", "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"}


def train(*args, cwd, check=True):
    r = subprocess.run([*script(), *args], capture_output=True, text=True, cwd=cwd, env=env(), timeout=300)
    if check: assert r.returncode == 0, r.stderr[-3000:]
    return r


def launch_two(*args, cwd, mixed_precision="no", check=True):
    "The example script in two CPU processes, started as the docs say."
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", mixed_precision, "--dynamo_backend", "no", str(SCRIPT), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env={**env(), "ACCELERATE_USE_CPU": "1"}, timeout=300)
    if check: assert r.returncode == 0, r.stderr[-3000:]
    return r


def final(ckpt_dir):
    return read_checkpoint(list_checkpoints(ckpt_dir)[-1])


def assert_same_run(a, b, atol=0.0):
    assert a["step"] == b["step"] and a["position"] == b["position"]
    for part in ("model", "ema", "optimizer"):
        ta, tb = a["tensors"][part], b["tensors"][part]
        assert ta.keys() == tb.keys()
        for k in ta:
            if atol == 0: assert torch.equal(ta[k], tb[k]), (part, k)
            else: torch.testing.assert_close(ta[k], tb[k], atol=atol, rtol=0, msg=f"{part} {k}")
    ha, hb = a["tensors"]["history"], b["tensors"]["history"]
    for k in ("steps.loss", "steps.lr"):
        if atol == 0: assert torch.equal(ha[k], hb[k]), k
        else: torch.testing.assert_close(ha[k], hb[k], atol=1e-5, rtol=1e-5)


def test_sigterm_then_resume_is_exact(tmp_path):
    "Killed by SIGTERM from outside at whatever step it had reached, then resumed: the same run as without the kill."
    flags = ["--epochs", "100", "--batch-size", "64", "--ckpt-every-steps", "20", "--ckpt-every-minutes", "none"]
    train(*flags, "--ckpt-dir", "straight", cwd=tmp_path)

    p = subprocess.Popen([*script(), *flags, "--ckpt-dir", "killed"], cwd=tmp_path, env=env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list_checkpoints(tmp_path / "killed") and time.time() < deadline and p.poll() is None: time.sleep(0.02)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 128 + signal.SIGTERM, f"exit {p.returncode}; the kill came too late?\n{err[-2000:]}"
    assert "stopped by SIGTERM" in err
    stopped = final(tmp_path / "killed")
    assert 20 <= stopped["step"] < 1600

    train(*flags, "--ckpt-dir", "killed", "--resume", "latest", cwd=tmp_path)
    assert_same_run(final(tmp_path / "straight"), final(tmp_path / "killed"))


def test_two_processes_match_one(tmp_path):
    "Two gloo processes: identical on both ranks, equal to one process with the same global batch, resumable."
    flags = [*FLAGS, "--dropout", "0", "--grad-accum", "2", "--ckpt-every-steps", "10"]
    train(*flags, "--ckpt-dir", "one", cwd=tmp_path)
    launch_two(*flags, "--ckpt-dir", "two", cwd=tmp_path)
    one, two = final(tmp_path / "one"), final(tmp_path / "two")
    assert (one["world_size"], two["world_size"]) == (1, 2)
    # every save compared the two ranks' weights bit for bit (it raises otherwise) and recorded the hash
    assert two["weights_sha256"] and all(read_checkpoint(p, tensors=False)["weights_sha256"] for p in list_checkpoints(tmp_path / "two"))
    assert_same_run(one, two, atol=DDP_VS_ONE_PROCESS_ATOL)
    assert one["tensors"]["model"].keys() == two["tensors"]["model"].keys()
    worst = max((one["tensors"]["model"][k] - two["tensors"]["model"][k]).abs().max().item() for k in one["tensors"]["model"])
    print(f"largest weight difference, 2 processes vs 1: {worst:.2e}")

    # resume two processes from the middle of the run (step 30 of 48, inside epoch 1): the same end, bit for bit
    shutil.copytree(tmp_path / "two" / "step-00000030", tmp_path / "two-resumed" / "step-00000030")
    launch_two(*flags, "--ckpt-dir", "two-resumed", "--resume", "latest", cwd=tmp_path)
    assert_same_run(two, final(tmp_path / "two-resumed"))


def test_config_file_and_flags(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"epochs": 1, "lr": 0.003, "batch_size": 64}))
    r = train("--config", "run.json", "--lr", "0.01", "--ckpt-dir", "c", cwd=tmp_path, check=False)
    assert r.returncode == 2 and "file 0.003, flag --lr 0.01" in r.stderr and not (tmp_path / "c").exists()
    r = train("--config", "run.json", "--seed", "3", "--ckpt-dir", "c", cwd=tmp_path)
    assert read_checkpoint(list_checkpoints(tmp_path / "c")[-1], tensors=False)["config"]["seed"] == 3
    r = train("--batch-size", "60", "--grad-accum", "8", "--ckpt-dir", "d", cwd=tmp_path, check=False)
    assert r.returncode == 2 and "`batch_size` (60) must be a multiple" in r.stderr
    r = train("--ckpt-dir", "c", cwd=tmp_path, check=False)  # a new run would overwrite the one in c/
    assert r.returncode == 2 and "already holds checkpoints" in r.stderr


def test_checkpoint_files_are_safetensors_and_json(tmp_path):
    train("--epochs", "1", "--ckpt-dir", "c", cwd=tmp_path)
    (ckpt,) = list_checkpoints(tmp_path / "c")
    assert sorted(p.name for p in ckpt.iterdir()) == ["ema.safetensors", "history.safetensors", "model.safetensors",
                                                      "optimizer.safetensors", "state.json"]
    state = json.loads((ckpt / "state.json").read_text())
    assert {"config", "step", "position", "rng", "dl_rng", "versions", "optimizer", "files"} <= state.keys()
    for name in state["files"]: load_file(ckpt / name)  # plain safetensors, readable without capgen


def test_launch_precision_must_agree_with_the_config(tmp_path):
    """`accelerate launch --mixed_precision bf16` with `precision` fp32 is refused with a message, not ignored;
    with `--precision bf16` too, two processes train under bf16 autocast."""
    flags = ["--epochs", "1", "--batch-size", "64", "--ckpt-every-minutes", "none"]
    r = launch_two(*flags, "--precision", "fp32", "--ckpt-dir", "a", cwd=tmp_path, mixed_precision="bf16", check=False)
    assert r.returncode != 0 and "--mixed_precision bf16 contradicts `precision`='fp32'" in r.stderr, r.stderr[-3000:]
    assert not list_checkpoints(tmp_path / "a")
    launch_two(*flags, "--precision", "bf16", "--ckpt-dir", "b", cwd=tmp_path, mixed_precision="bf16")
    last = final(tmp_path / "b")
    assert last["config"]["precision"] == "bf16" and last["world_size"] == 2
