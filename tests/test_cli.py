"""The installed `capgen` console command, run as a user runs it."""
import json
import os
import shutil
import subprocess
import sys

import pytest
from PIL import Image

import capgen


def capgen_cmd(*args, cwd=None, env=None):
    exe = shutil.which("capgen")
    assert exe, "the `capgen` console script is not on PATH: is capgen installed (pip install -e .)?"
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd, timeout=900,
                          env=None if env is None else os.environ | env)


def test_version():
    r = capgen_cmd("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"capgen {capgen.__version__}"


@pytest.mark.parametrize("args", [(), ("--help",)])
def test_help_lists_commands(args):
    r = capgen_cmd(*args)
    assert r.returncode == 0
    for c in ("demo", "generate", "eval", "build-dataset", "caps", "--version"):
        assert c in r.stdout


@pytest.mark.parametrize("command, options", [
    ("demo", ["--out", "--tier", "--fast", "--full", "--prompts", "--sizes", "-n", "--seed"]),
    ("generate", ["--pipeline", "--d-max", "-n", "--cfg-scale", "--rerank", "--seed", "--out"]),
    ("eval", ["--pipeline", "--cap-model", "--prompts", "--d-max", "--sizes", "--out"]),
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
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["caps.md", "caps.png"]
    table = (tmp_path / "out" / "caps.md").read_text()
    assert "| 0.001 |" in table and "| 1.5 |" in table and table.count("| 3,000 | 3,000 |") == 2


@pytest.mark.parametrize("args, message", [
    (("caps", "--sizes", "2.5"), "`d_max` must lie in [0, 2]"),
    (("caps", "--n", "0"), "`n` must be a positive integer"),
    (("caps", "--d", "1"), "≥ 2"),
    (("caps", "--n", "lots"), "--n"),
    (("demo", "--sizes", "2.5"), "--sizes must be cap sizes"),
    (("demo", "--tier", "huge"), "--tier"),
    (("demo", "-n", "0"), "-n must be an integer ≥ 1"),
    (("generate", "a red star", "--d-max", "-0.5"), "--d-max must lie in [0, 2]"),
    (("generate", "a red star"), "run 'capgen demo' first"),
    (("eval", "-n", "1"), "-n must be an integer ≥ 2"),
    (("build-dataset", "shapes:0", "--out", "ds"), "must be an integer ≥ 1"),
    (("fly",), "invalid choice"),
    (("train", "vae", "--out", "x"), "invalid choice"),
    (("train", "flow"), "--out is required"),
    (("train", "flow", "--out", "x"), "run 'capgen demo' first"),
    (("train", "tokenizer", "--out", "x", "--lr", "-1"), "`lr` must be > 0"),
])
def test_bad_input_names_the_parameter(tmp_path, args, message):
    r = capgen_cmd(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert message in r.stderr, r.stderr
    assert not list(tmp_path.iterdir())     # nothing written


def test_demo_fast_end_to_end(tmp_path):
    "The README's main job in its fast tier, from an empty cache; then `generate` on the pipeline it saved."
    env = {"CAPGEN_CACHE": str(tmp_path / "cache")}
    r = capgen_cmd("demo", "--fast", "--out", str(tmp_path / "demo"), cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "demo"
    assert sorted(p.name for p in out.iterdir()) == ["grids", "metrics.json", "pipeline", "report.html", "sweep.png"]
    assert len(list((out / "grids").glob("*.png"))) == 4
    m = json.loads((out / "metrics.json").read_text())
    assert m["tier"] == "fast" and set(m["sweep"]) == {"0.2", "0.5", "0.8"}
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
    from capgen.training import list_checkpoints, read_checkpoint
    from capgen.transformer import load_transformer
    last = read_checkpoint(list_checkpoints(tmp_path / "tf.checkpoints")[-1], tensors=False)
    n = last["n_train"]                                               # 128 renders less the ~20% held out
    assert last["world_size"] == 2 and 80 < n < 120 and last["step"] == 2 * ((n + 1) // 2 * 2 // 16)   # 2 epochs of 16
    model = load_transformer(tmp_path / "tf")
    assert model.cfg.d_model == 32 and json.loads((tmp_path / "tf" / "train-config.json").read_text())["data"]["renders"] == 128
