"""What capgen does with what it is given. Every loader answers a broken or foreign file with one named error,
`LoadError`, whose message names the file and says what is wrong; the command line answers malformed input with
one line and the documented exit code (2: a flag or argument, 1: a file or a value capgen cannot use), never a
traceback; and no command replaces or deletes anything it did not write, whether it succeeds, fails or is
interrupted."""
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from capgen.checkpoints import CheckpointError, list_checkpoints
from capgen.cli import main
from capgen.clip import ClipConfig, Embedder
from capgen.config import TrainConfig
from capgen.core import FORMAT, MARKER, WEIGHTS, LoadError, sha256
from capgen.flow import FlowConfig, VectorField, load_flow, save_flow
from capgen.pipeline import TextToImage
from capgen.shapes import AttributeReader, ReaderConfig, default_reader, load_reader, save_reader
from capgen.tokenizer import FSQTokenizer, TokenizerConfig, VQGANConfig, VQGANTokenizer, load_tokenizer, load_vqgan
from capgen.transformer import ImageTransformer, TransformerConfig, load_transformer, save_transformer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from train_toy import toy_learner   # the toy training problem of the example script


# ---------------------------------------------------------------------------------------------------------- parts
def tiny_parts():
    torch.manual_seed(0)
    emb = Embedder.from_config(ClipConfig(embed_dim=8, image_size=32, vision_width=8, text_width=32, text_layers=1, head_width=16))
    tok = FSQTokenizer(TokenizerConfig(image_size=32, levels=(3, 3), widths=(8, 8)))
    flow = VectorField(FlowConfig(d=8, width=16, depth=1, size_edges=(0.0, 1.0), size_weights=(1.0,)))
    tr = ImageTransformer(TransformerConfig(vocab_size=tok.vocab_size, grid=tok.grid, cond_dim=8, d_model=16, n_layers=1, n_heads=2))
    return emb, tok, flow, tr


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    "One saved folder of each kind, and a saved pipeline; tests copy them before damaging them."
    root = tmp_path_factory.mktemp("parts")
    emb, tok, flow, tr = tiny_parts()
    emb.save(root / "embedder")
    tok.save(root / "tokenizer")
    save_flow(flow, root / "flow")
    save_transformer(tr, root / "transformer")
    save_reader(AttributeReader(ReaderConfig(width=8)), root / "reader")
    TextToImage(emb, flow, tr, tok).save(root / "pipeline")
    return root


LOADERS = {"flow": load_flow, "transformer": load_transformer, "tokenizer": load_tokenizer, "reader": load_reader,
           "embedder": Embedder.load, "pipeline": TextToImage.load}


def config_of(meta: dict, kind: str) -> dict:
    "The model config inside a part's JSON, to edit in place."
    if kind in ("flow", "reader"): return meta
    if kind == "embedder": return meta["source"]["clip_config"]
    return meta["config"]


def edit_json(path: Path, fn):
    d = json.loads(path.read_text()); fn(d); path.write_text(json.dumps(d))


def restamp(folder: Path):
    "Record the current weights' checksum in the marker, as if capgen had written them (to reach the checks after it)."
    edit_json(folder / MARKER, lambda m: m["files"].update({WEIGHTS: sha256(folder / WEIGHTS)}))


def other_shapes(folder: Path):
    save_file({k: torch.zeros(v.shape[0] + 1, *v.shape[1:]) if v.ndim else v for k, v in load_file(folder / WEIGHTS).items()},
              str(folder / WEIGHTS))
    restamp(folder)


def flip_bytes(f: Path):
    b = bytearray(f.read_bytes()); mid = len(b) // 2
    b[mid:mid + 16] = bytes(x ^ 0xFF for x in b[mid:mid + 16]); f.write_bytes(bytes(b))


def drop_key(kind):
    key = {"flow": "d", "reader": "width", "transformer": "vocab_size", "tokenizer": "levels", "embedder": "embed_dim"}[kind]
    return lambda m: config_of(m, kind).pop(key)


# (case, damage(folder, kind), what the message says); weights and configs of a pipeline are damaged in its transformer
CASES = [
    ("missing folder", lambda p, k: shutil.rmtree(p), "no such folder"),
    ("no marker", lambda p, k: (p / MARKER).unlink(), f"has no {MARKER}"),
    ("marker not JSON", lambda p, k: (p / MARKER).write_text('{"kind": '), "not valid JSON"),
    ("newer format", lambda p, k: edit_json(p / MARKER, lambda m: m.update(format=FORMAT + 1)), "newer capgen"),
    ("another kind", lambda p, k: edit_json(p / MARKER, lambda m: m.update(kind="flow" if k != "flow" else "transformer")), "not a"),
    ("JSON missing", lambda p, k: (p / f"{k}.json").unlink(), "{kind}.json: no such file"),
    ("JSON truncated", lambda p, k: (p / f"{k}.json").write_text((p / f"{k}.json").read_text()[:40]), "not valid JSON"),
    ("weights missing", lambda p, k: (p / WEIGHTS).unlink(), "no such file"),
    ("weights truncated", lambda p, k: os.truncate(p / WEIGHTS, (p / WEIGHTS).stat().st_size // 2), "corrupt or truncated"),
    ("weights corrupt", lambda p, k: flip_bytes(p / WEIGHTS), "corrupt or truncated"),
    ("weights not safetensors", lambda p, k: ((p / WEIGHTS).write_bytes(b"\x00" * 64), restamp(p)), "not a readable safetensors"),
    ("weights of other shapes", lambda p, k: other_shapes(p), "do not fit"),
    ("weights of other names", lambda p, k: (save_file({"w": torch.zeros(2)}, str(p / WEIGHTS)), restamp(p)), "missing"),
    ("unknown config key", lambda p, k: edit_json(p / f"{k}.json", lambda m: config_of(m, k).update(colour=1)), "{kind}.json"),
    ("missing config key", lambda p, k: edit_json(p / f"{k}.json", drop_key(k)), ""),
]
PART_CASES = {"JSON missing", "JSON truncated", "weights missing", "weights truncated", "weights corrupt",
              "weights not safetensors", "weights of other shapes", "weights of other names", "unknown config key",
              "missing config key"}


@pytest.mark.parametrize("kind", list(LOADERS))
@pytest.mark.parametrize("case, damage, says", CASES, ids=[c[0] for c in CASES])
def test_every_loader_names_the_broken_file(saved, tmp_path, kind, case, damage, says):
    folder = tmp_path / kind
    shutil.copytree(saved / kind, folder)
    target, target_kind = folder, kind
    if kind == "pipeline" and case in PART_CASES: target, target_kind = folder / "transformer", "transformer"
    damage(target, target_kind)
    with pytest.raises(LoadError) as e: LOADERS[kind](folder)
    msg, says = str(e.value), says.format(kind=target_kind)
    assert says in msg, msg
    assert str(target) in msg, f"the message does not name the folder or file: {msg}"
    assert "\n" not in msg.strip(), msg


def test_loaders_read_what_was_saved(saved):
    for kind, load in LOADERS.items(): load(saved / kind)


def test_pipeline_json_is_read_and_checked(saved, tmp_path):
    p = shutil.copytree(saved / "pipeline", tmp_path / "p")
    edit_json(p / "pipeline.json", lambda m: m.update(parts=["flow"]))
    with pytest.raises(LoadError, match="pipeline.json: `parts`"): TextToImage.load(p)
    (p / "pipeline.json").unlink()
    with pytest.raises(LoadError, match="pipeline.json: no such file"): TextToImage.load(p)
    q = shutil.copytree(saved / "pipeline", tmp_path / "q")        # parts that do not fit together
    shutil.rmtree(q / "flow"); save_flow(VectorField(FlowConfig(d=5, width=16, depth=1)), q / "flow")
    with pytest.raises(LoadError, match="do not fit together"): TextToImage.load(q)


# ------------------------------------------------------------------------------------------------------ VQGAN files
def tiny_vqgan():
    torch.manual_seed(0)
    return VQGANTokenizer(VQGANConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_levels=(), z_channels=8, embed_dim=4,
                                      n_embed=16), 16)


@pytest.mark.parametrize("case, make, says", [
    ("missing", lambda d: d / "none.ckpt", "is not a file"),
    ("truncated ckpt", lambda d: (torch.save({"state_dict": tiny_vqgan().state_dict()}, d / "v.ckpt"),
                                  os.truncate(d / "v.ckpt", 2000), d / "v.ckpt")[-1], "not a readable torch checkpoint"),
    ("garbage ckpt", lambda d: ((d / "g.ckpt").write_bytes(b"no checkpoint here" * 10), d / "g.ckpt")[-1], "not a readable"),
    ("truncated safetensors", lambda d: (save_file(tiny_vqgan().state_dict(), str(d / "v.safetensors")),
                                         os.truncate(d / "v.safetensors", 300), d / "v.safetensors")[-1], "not a readable safetensors"),
    ("another model", lambda d: (save_file(VectorField(FlowConfig(d=8, width=16, depth=1)).state_dict(), str(d / "f.safetensors")),
                                 d / "f.safetensors")[-1], "not a taming/latent-diffusion VQ"),
    ("a key missing", lambda d: (save_file({k: v for k, v in tiny_vqgan().state_dict().items() if "decoder.conv_out" not in k},
                                           str(d / "m.safetensors")), d / "m.safetensors")[-1], ""),
])
def test_load_vqgan_names_the_broken_file(tmp_path, case, make, says):
    path = make(tmp_path)
    with pytest.raises(LoadError) as e: load_vqgan(path, image_size=16)
    assert says in str(e.value) and str(path) in str(e.value), str(e.value)


def test_load_vqgan_reads_a_good_checkpoint(tmp_path):
    v = tiny_vqgan()
    torch.save({"state_dict": v.state_dict()}, tmp_path / "v.ckpt")
    x = torch.randint(0, 256, (2, 16, 16, 3), dtype=torch.uint8).numpy()
    assert torch.equal(load_vqgan(tmp_path / "v.ckpt", image_size=16).encode(x), v.encode(x))


# ---------------------------------------------------------------------------------------- checkpoints and the cache
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt") / "c"
    cfg = TrainConfig(epochs=1, batch_size=64, ckpt_dir=str(d), ckpt_every_minutes=None)
    toy_learner(cfg).fit_cfg()
    return cfg, list_checkpoints(d)[-1]


def _state(p, fn): edit_json(p / "state.json", fn)


@pytest.mark.parametrize("case, damage, says", [
    ("state.json corrupt", lambda p: (p / "state.json").write_text("{"), "corrupt"),
    ("newer format", lambda p: _state(p, lambda s: s.update(format=99)), "newer capgen"),
    ("keys missing", lambda p: _state(p, lambda s: s.pop("position")), "not a complete capgen training checkpoint"),
    ("weights truncated", lambda p: os.truncate(p / "model.safetensors", 100), "does not match its checksum"),
    ("weights missing", lambda p: (p / "model.safetensors").unlink(), "missing model.safetensors"),
    ("weights of other shapes", lambda p: (other_shapes_ckpt(p)), "does not fit this model"),
    ("another config", lambda p: _state(p, lambda s: s["config"].update(lr=0.5)), "trained with another config"),
])
def test_resume_names_the_broken_checkpoint(checkpoint, tmp_path, case, damage, says):
    cfg, ckpt = checkpoint
    copy = shutil.copytree(ckpt, tmp_path / "c" / ckpt.name)
    damage(copy)
    learn = toy_learner(replace(cfg, ckpt_dir=str(tmp_path / "c")))
    with pytest.raises(CheckpointError) as e: learn.fit_cfg(resume=str(copy))
    assert isinstance(e.value, LoadError) and says in str(e.value) and str(copy) in str(e.value), str(e.value)


def other_shapes_ckpt(p: Path):
    save_file({k: torch.zeros(v.shape[0] + 1, *v.shape[1:]) for k, v in load_file(p / "model.safetensors").items()},
              str(p / "model.safetensors"))
    _state(p, lambda s: s["files"].update({"model.safetensors": sha256(p / "model.safetensors")}))


def test_a_broken_cached_default_is_said_and_retrained(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CAPGEN_CACHE", str(tmp_path / "cache"))
    tiny = ReaderConfig(width=8, n_train=128, n_valid=32, epochs=1, batch_size=64)
    default_reader(tiny)
    (folder,) = [p for p in (tmp_path / "cache").glob("reader-*") if "." not in p.name]
    for damage, says in ((lambda: os.truncate(folder / WEIGHTS, 1000), "corrupt or truncated"),
                         (lambda: (folder / MARKER).unlink(), "not a saved reader"),
                         (lambda: (folder / "reader.json").write_text("{"), "not valid JSON")):
        damage()
        capsys.readouterr()
        reader = default_reader(tiny)
        said = capsys.readouterr().out
        assert says in said and "training it again" in said, said
        assert isinstance(reader, AttributeReader) and load_reader(folder) is not None
    assert len(list((tmp_path / "cache").glob("reader-*.broken-*"))) == 3    # moved aside, never deleted


# ------------------------------------------------------------------------------------------------- the command line
@pytest.fixture()
def desk(tmp_path, monkeypatch, saved):
    """A user's desk: the current folder `work/` holds a canary file and a folder of the user's (`user/`) with a
    canary inside; its parent holds one too. Every command runs in `work/`. Returns the desk and a snapshot function."""
    work = tmp_path / "work"
    (work / "user").mkdir(parents=True)
    for f in (tmp_path / "parent-canary.txt", work / "canary.txt", work / "user" / "thesis.tex", work / "holiday.png"):
        f.write_text(f"the user's {f.name}")
    (work / "photo.png").write_bytes(b"not an image at all")
    shutil.copytree(saved / "pipeline", work / "P")
    broken = shutil.copytree(saved / "pipeline", work / "BROKEN")
    os.truncate(broken / "transformer" / WEIGHTS, 500)
    os.truncate(shutil.copytree(saved / "pipeline", work / "BROKENTOK") / "tokenizer" / WEIGHTS, 500)
    shutil.copytree(saved / "flow", work / "FLOWPART")
    (work / "bad.json").write_text("{")
    (work / "sections.json").write_text('{"modle": {}}')
    monkeypatch.chdir(work)
    monkeypatch.setenv("CAPGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("WANDB_MODE", "disabled")

    def snapshot():
        return {str(p.relative_to(tmp_path)): p.read_bytes() for p in sorted(tmp_path.rglob("*"))
                if p.is_file() and "cache" not in p.relative_to(tmp_path).parts}
    return tmp_path, snapshot


def run_cli(args, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    try: code = main(list(args))
    except SystemExit as e: code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


# (arguments, exit code, what stderr says): P is a good tiny pipeline, BROKEN one with truncated weights
MALFORMED = [
    ((), 2, "usage: capgen"),
    (("fly",), 2, "invalid choice"),
    (("demo", "--out", "user"), 2, "holds files capgen did not write"),
    (("demo", "--out", "."), 2, "current folder"),
    (("demo", "--out", ".."), 2, "current folder or one above"),
    (("demo", "--out", "canary.txt"), 2, "is a file"),
    (("demo", "--out", ""), 2, "--out is empty"),
    (("demo", "--out", "FLOWPART"), 2, "already holds a capgen flow"),
    (("demo", "-n", "0"), 2, "-n must be an integer ≥ 1"),
    (("demo", "-n", "many"), 2, "invalid int value"),
    (("demo", "--sizes", "2.5"), 2, "--sizes must be cap sizes"),
    (("demo", "--sizes", "0"), 2, "--sizes must be cap sizes"),
    (("demo", "--tier", "huge"), 2, "invalid choice"),
    (("demo", "--fast", "--full"), 2, "exclude each other"),
    (("demo", "--eval-prompts", "0"), 2, "--eval-prompts must be"),
    (("demo", "--prompts", " "), 2, "empty caption"),
    (("generate", "a red star"), 2, "run 'capgen demo' first"),
    (("generate", "a red star", "--pipeline", "nowhere"), 2, "not a saved pipeline"),
    (("generate", "a red star", "--pipeline", "FLOWPART"), 2, "not a saved pipeline"),
    (("generate", "a red star", "--pipeline", "BROKEN", "-o", "g.png"), 1, "corrupt or truncated"),
    (("generate", "missing.png", "--pipeline", "P"), 2, "no such image file"),
    (("generate", "photo.png", "--pipeline", "P"), 2, "not a readable image"),
    (("generate", " ", "--pipeline", "P"), 2, "empty caption"),
    (("generate", "a red star", "-o", "grid.jpg"), 2, "must name a .png"),
    (("generate", "a red star", "--pipeline", "P", "-o", "holiday.png"), 2, "--overwrite"),
    (("generate", "a red star", "--pipeline", "P", "-o", "canary.txt"), 2, "must name a .png"),
    (("generate", "a red star", "--pipeline", "P", "-o", "user"), 2, "must name a .png"),
    (("generate", "a red star", "--d-max", "3"), 2, "--d-max must lie in [0, 2]"),
    (("generate", "a red star", "--pipeline", "P", "--d-max", "1.5"), 2, "outside the cap sizes"),
    (("generate", "a red star", "-n", "0"), 2, "-n must be"),
    (("generate", "a red star", "--rerank", "0"), 2, "--rerank must be"),
    (("generate", "a red star", "--cfg-scale", "-1"), 2, "--cfg-scale must be"),
    (("eval", "-n", "1"), 2, "-n must be an integer ≥ 2"),
    (("eval", "--prompts", "0"), 2, "--prompts must be"),
    (("eval", "--sizes", "3"), 2, "cap sizes in (0, 2]"),
    (("eval", "--out", "user", "--pipeline", "P"), 2, "holds files capgen did not write"),
    (("eval", "--cap-model", "nowhere", "--pipeline", "P"), 2, "not a saved transformer"),
    (("eval", "--reader", "nowhere", "--pipeline", "P"), 2, "not a saved reader"),
    (("eval", "--pipeline", "BROKEN"), 1, "corrupt or truncated"),
    (("build-dataset", "shapes:0", "--out", "ds"), 2, "must be an integer ≥ 1"),
    (("build-dataset", "shapes:lots", "--out", "ds"), 2, "shapes:N"),
    (("build-dataset", "nowhere", "--out", "ds"), 2, "neither an existing folder"),
    (("build-dataset", "shapes:10", "--out", "ds", "--shard-size", "0"), 2, "--shard-size must be"),
    (("build-dataset", "shapes:10", "--out", "ds", "--num-proc", "0"), 2, "--num-proc must be"),
    (("build-dataset", "shapes:10", "--out", "user", "--pipeline", "P"), 1, "holds no capgen build"),
    (("build-dataset", "shapes:10", "--out", "ds", "--pipeline", "BROKENTOK"), 1, "corrupt or truncated"),   # the part it uses
    (("train", "vae", "--out", "x"), 2, "invalid choice"),
    (("train", "flow"), 2, "--out is required"),
    (("train", "flow", "--out", "x"), 2, "run 'capgen demo' first"),
    (("train", "flow", "--out", "user"), 2, "is not empty"),
    (("train", "flow", "--out", "x", "--config", "missing.json"), 2, "no such file"),
    (("train", "flow", "--out", "x", "--config", "bad.json"), 2, "not valid JSON"),
    (("train", "flow", "--out", "x", "--config", "sections.json"), 2, "unknown sections"),
    (("train", "flow", "--out", "x", "--data", "user"), 2, "not a dataset written by"),
    (("train", "flow", "--out", "x", "--pipeline", "BROKEN"), 1, "corrupt or truncated"),
    (("train", "tokenizer", "--out", "x", "--lr", "-1"), 2, "`lr` must be a number > 0"),
    (("train", "tokenizer", "--out", "x", "--epochs", "zero"), 2, "--epochs"),
    (("train", "flow", "--out", "x", "--device", "toaster"), 2, "is not a device"),
    (("caps", "--n", "0"), 2, "--n must be an integer ≥ 1"),
    (("caps", "--n", "lots"), 2, "invalid int value"),
    (("caps", "--d", "1"), 2, "--d must be an integer ≥ 2"),
    (("caps", "--sizes", "2.5"), 2, "--sizes must be cap sizes"),
    (("caps", "--out", "user"), 2, "holds files capgen did not write"),
    (("caps", "--out", "."), 2, "current folder"),
]
if not torch.cuda.is_available():
    MALFORMED.append((("train", "flow", "--out", "x", "--device", "cuda"), 2, "no CUDA GPU"))


def test_enough_malformed_cases():
    assert len(MALFORMED) >= 40


@pytest.mark.parametrize("args, code, says", MALFORMED, ids=[" ".join(a) or "(none)" for a, _, _ in MALFORMED])
def test_malformed_input_gets_one_line_and_its_exit_code(desk, capsys, args, code, says):
    root, snapshot = desk
    before = snapshot()
    got, out, err = run_cli(args, capsys)
    assert "Traceback" not in err + out
    assert got == code, (got, err)
    assert says in err, err
    if code == 1: assert len(err.strip().splitlines()) == 1, err
    assert snapshot() == before, "a failed command wrote, changed or deleted files"


def test_writing_commands_replace_only_their_own_output(desk, capsys):
    root, snapshot = desk
    before = snapshot()
    caps = ("caps", "--d", "8", "--n", "500", "--sizes", "0.1")
    for _ in range(2):   # the second run replaces the folder the first wrote
        assert run_cli((*caps, "--out", "capsout"), capsys)[0] == 0
    gen = ("generate", "a red star", "--pipeline", "P", "-n", "2")
    for _ in range(2):
        assert run_cli((*gen, "-o", "grid.png"), capsys)[0] == 0
    assert run_cli((*gen, "-o", "holiday.png", "--overwrite"), capsys)[0] == 0    # the user said so
    after = snapshot()
    new = set(after) - set(before)
    assert all(k.startswith(("work/capsout/", "work/grid.png")) for k in new), new
    changed = {k for k in before if after.get(k) != before[k]}
    assert changed == {"work/holiday.png"}, changed
    assert (root / "work" / "capsout" / MARKER).is_file()
    # the folder just written is capgen's caps output: another kind of command will not replace it
    code, _, err = run_cli(("demo", "--out", "capsout"), capsys)
    assert code == 2 and "already holds a capgen caps" in err


def capgen_exe():
    exe = shutil.which("capgen")
    assert exe, "the `capgen` console script is not on PATH"
    return exe


def test_the_console_command(tmp_path):
    "No command: help on stderr and exit 2; no FutureWarning from torch.jit on any command."
    r = subprocess.run([capgen_exe()], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 2 and "usage: capgen" in r.stderr
    r = subprocess.run([capgen_exe(), "caps", "--d", "8", "--n", "200", "--sizes", "0.5", "--out", "c"], capture_output=True,
                       text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0 and "Warning" not in r.stderr, r.stderr
