"""The installed `capgen` console command, run as a user runs it."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image

import capgen
from capgen.checkpoints import list_checkpoints, read_checkpoint
from capgen.transformer import load_transformer


def capgen_cmd(*args, cwd=None, env=None):
    exe = shutil.which("capgen")
    assert exe, "the `capgen` console script is not on PATH: is capgen installed (pip install -e .)?"
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd, timeout=900,
                          env=None if env is None else os.environ | env)


def test_version():
    r = capgen_cmd("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"capgen {capgen.__version__}"


@pytest.mark.parametrize("args, code", [((), 2), (("--help",), 0)])
def test_help_lists_commands(args, code):
    "`capgen --help` prints the help; `capgen` alone prints it on stderr and exits 2, as a usage error."
    r = capgen_cmd(*args)
    assert r.returncode == code
    for c in ("demo", "generate", "eval", "build-dataset", "caps", "--version"):
        assert c in (r.stdout if code == 0 else r.stderr)


@pytest.mark.parametrize("command, options", [
    ("demo", ["--out", "--tier", "--fast", "--full", "--prompts", "--sizes", "-n", "--seed"]),
    ("generate", ["--pipeline", "--d-max", "-n", "--cfg-scale", "--rerank", "--seed", "--out"]),
    ("eval", ["--pipeline", "--cap-model", "--reader", "--prompts", "--d-max", "--sizes", "--out"]),
    ("build-dataset", ["--out", "--pipeline", "--image-column", "--split", "--shard-size", "--num-proc"]),
    ("caps", ["--out", "--d", "--n", "--sizes", "--seed"]),
    ("train", ["PART", "--config", "--print-config", "--out", "--data", "--pipeline", "--resume", "--device",
               "--epochs", "--batch-size", "--lr", "--ckpt-dir", "--wandb", "accelerate launch"]),
])
def test_command_help_lists_options(command, options):
    r = capgen_cmd(command, "--help")
    assert r.returncode == 0
    for opt in options:
        assert opt in r.stdout, (command, opt)


def test_caps_small(tmp_path):
    r = capgen_cmd("caps", "--out", str(tmp_path / "out"), "--d", "16", "--n", "3000", "--sizes", "0.001", "1.5")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["capgen.json", "caps.md", "caps.png"]
    table = (tmp_path / "out" / "caps.md").read_text()
    assert "| 0.001 |" in table and "| 1.5 |" in table and table.count("| 3,000 | 3,000 |") == 2


def at_a_terminal():
    "Ctrl-C's default disposition in the child, as at a terminal (a test run in the background inherits SIGINT ignored)."
    signal.signal(signal.SIGINT, signal.SIG_DFL)


CLIP_STEP_WAIT = 3.0   # seconds after the CLIP step starts: its 1,000 renders are drawn, training is under way


def test_demo_fast_end_to_end(tmp_path):
    """The README's main job in its fast tier, from an empty cache: first stopped by Ctrl-C (SIGINT) while it trains
    its first part (exit 130 with one line, nothing of the user's touched, nothing half-written), then run again to
    the end; then `generate` on the pipeline it saved, and stage 2 retrained in two processes."""
    env = {"CAPGEN_CACHE": str(tmp_path / "cache")}
    (tmp_path / "canary.txt").write_text("mine")
    (tmp_path / "demo").mkdir()                      # an empty folder the user made for it: allowed
    p = subprocess.Popen([shutil.which("capgen"), "demo", "--fast", "--out", str(tmp_path / "demo")], cwd=tmp_path,
                         env=os.environ | env | {"PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=at_a_terminal)
    seen = ""
    while "[1/5] CLIP" not in seen and p.poll() is None: seen += p.stdout.readline()
    time.sleep(CLIP_STEP_WAIT)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 130, (p.returncode, err[-2000:])
    assert "interrupted" in err and "run it again to continue" in err and "Traceback" not in err, err[-2000:]
    if "saving a checkpoint" in err:        # the signal came during training (not while the renders were drawn)
        assert list((tmp_path / "cache").glob("clip-*.checkpoints/step-*")), "the interrupted CLIP's checkpoint is gone"
    assert (tmp_path / "canary.txt").read_text() == "mine" and list((tmp_path / "demo").iterdir()) == []

    r = capgen_cmd("demo", "--fast", "--out", str(tmp_path / "demo"), cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not list((tmp_path / "cache").glob("*.checkpoints"))          # every part finished: checkpoints removed
    assert (tmp_path / "canary.txt").read_text() == "mine"
    out = tmp_path / "demo"
    assert sorted(p.name for p in out.iterdir()) == ["capgen.json", "grids", "metrics.json", "pipeline", "report.html", "sweep.png"]
    assert len(list((out / "grids").glob("*.png"))) == 4
    m = json.loads((out / "metrics.json").read_text())
    assert m["tier"] == "fast" and set(m["sweep"]) == {"0.2", "0.5", "0.8", "auto"}
    for k in ("CLIP", "reader", "tokenizer", "transformer", "flow", "generation", "evaluation", "total"):
        assert m["seconds"][k] >= 0
    r = capgen_cmd("generate", "a red star in the top left", "--d-max", "0.7", "-n", "16", "-o", "grid.png",
                   cwd=tmp_path / "demo" / "..", env=env)   # the default --pipeline: capgen-demo/pipeline is not here
    assert r.returncode == 2 and "capgen demo" in r.stderr
    r = capgen_cmd("generate", "a red star in the top left", "--pipeline", str(out / "pipeline"), "--d-max", "0.7",
                   "-n", "16", "-o", str(tmp_path / "grid.png"), env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert Image.open(tmp_path / "grid.png").size == (4 * 66 + 2, 4 * 66 + 2) and "16 images" in r.stdout

    # stage 2 retrained in two CPU processes (gloo) from the shapes-world renders of this pipeline's CLIP and tokenizer
    cfg = tmp_path / "t.json"
    cfg.write_text(json.dumps({"model": {"d_model": 32, "n_heads": 2, "n_layers": 1}, "data": {"renders": 128, "valid_pct": 0.2}}))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "capgen.cli", "train", "transformer", "--config", str(cfg),
           "--pipeline", str(out / "pipeline"), "--epochs", "2", "--batch-size", "16", "--out", str(tmp_path / "tf")]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600,
                       env=os.environ | env | {"ACCELERATE_USE_CPU": "1", "WANDB_MODE": "disabled", "PYTHONWARNINGS": "ignore"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("saved the transformer into") == 1          # process 0 saves
    last = read_checkpoint(list_checkpoints(tmp_path / "tf.checkpoints")[-1], tensors=False)
    n = last["n_train"]                                               # 128 renders less the ~20% held out
    assert last["world_size"] == 2 and 80 < n < 120 and last["step"] == 2 * ((n + 1) // 2 * 2 // 16)   # 2 epochs of 16
    model = load_transformer(tmp_path / "tf")
    assert model.cfg.d_model == 32 and json.loads((tmp_path / "tf" / "train-config.json").read_text())["data"]["renders"] == 128
