"""`capgen pipeline` and the part flags (--clip, --tokenizer, --device): parts a user has (saved folders, an open_clip
checkpoint, a VQGAN file) joined into a pipeline that `capgen generate` draws from; bad specs, parts that do not fit,
a missing GPU and a folder of the user's refused in one line, with nothing written."""
import shutil
import subprocess
from dataclasses import replace

import open_clip
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from capgen.cli import main
from capgen.clip import ClipConfig, Embedder
from capgen.flow import FlowConfig, VectorField, save_flow
from capgen.tokenizer import FSQTokenizer, TokenizerConfig, VQGANConfig, VQGANTokenizer
from capgen.transformer import ImageTransformer, TransformerConfig, save_transformer


def capgen_cmd(*args):
    exe = shutil.which("capgen")
    assert exe, "the `capgen` console script is not on PATH: is capgen installed (pip install -e .)?"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=600)


def transformer_config(tok, d: int) -> TransformerConfig:
    "A tiny transformer writing `tok`'s codes from `d`-d embeddings."
    return TransformerConfig(vocab_size=tok.vocab_size, grid=tok.grid, cond_dim=d, d_model=32, n_heads=2, n_layers=1)


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """Tiny random parts saved as capgen saves them: a 128-d CLIP, a tokenizer of 64-px images to 8×8 codes, a flow
    and a transformer that fit them, and some that do not."""
    root = tmp_path_factory.mktemp("parts")
    torch.manual_seed(0)
    Embedder.from_config(ClipConfig(), device="cpu").save(root / "clip")
    tok = FSQTokenizer(TokenizerConfig())
    tok.save(root / "tokenizer")
    save_flow(VectorField(FlowConfig(d=128, width=16, depth=1)), root / "flow")
    save_transformer(ImageTransformer(transformer_config(tok, 128)), root / "transformer")
    save_flow(VectorField(FlowConfig(d=64, width=16, depth=1)), root / "flow-64")
    save_transformer(ImageTransformer(replace(transformer_config(tok, 128), grid=4)), root / "transformer-4")
    (root / "notes.ckpt").write_text("not a checkpoint")
    return root


def flags(parts, **changes) -> list[str]:
    "The four part flags of `capgen pipeline` for the parts that fit, with `changes` (flag → value) swapped in."
    names = {"clip": "clip", "tokenizer": "tokenizer", "flow": "flow", "transformer": "transformer"}
    return [w for k, v in names.items() for w in (f"--{k}", changes.get(k, str(parts / v)))]


def test_pipeline_then_generate_and_build_dataset(parts, tmp_path):
    "Saved folders in, one pipeline folder out; `generate` draws from it and `build-dataset` takes its parts by flag."
    r = capgen_cmd("pipeline", *flags(parts), "--out", str(tmp_path / "p"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith(f"wrote {tmp_path / 'p'}: a 128-d CLIP, a tokenizer of 64-px images to 8×8 codes of 729")
    assert len(r.stdout.strip().splitlines()) == 1
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["capgen.json", "embedder", "flow", "pipeline.json", "tokenizer", "transformer"]
    r = capgen_cmd("generate", "a red star", "--pipeline", str(tmp_path / "p"), "-n", "2", "-o", str(tmp_path / "g.png"), "--device", "cpu")
    assert r.returncode == 0, r.stderr[-2000:]
    assert Image.open(tmp_path / "g.png").size == (2 * 66 + 2, 66 + 2)
    r = capgen_cmd("build-dataset", "shapes:16", "--clip", str(parts / "clip"), "--tokenizer", str(tmp_path / "p"),
                   "--out", str(tmp_path / "ds"), "--shard-size", "16", "--device", "cpu")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "16 rows (tokens (8, 8), 128-d embeddings)" in r.stdout
    r = capgen_cmd("build-dataset", "shapes:8", "--pipeline", str(tmp_path / "p"), "--tokenizer", str(parts / "tokenizer"),
                   "--out", str(tmp_path / "ds2"), "--shard-size", "8")
    assert r.returncode == 0 and "8 rows" in r.stdout, r.stderr[-2000:]


def test_open_clip_checkpoint_and_vqgan_file(parts, tmp_path):
    """An open_clip model from a local checkpoint (NAME:PATH) and a VQGAN checkpoint file, which takes the images the
    transformer's grid needs (8×8 codes at factor 4: 32 px)."""
    torch.manual_seed(0)
    vit = open_clip.create_model("ViT-S-32")       # 384-d; no published weights, random here
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(tmp_path / "vit.safetensors"))
    vq = VQGANTokenizer(VQGANConfig(ch=32, ch_mult=(1, 1, 1), num_res_blocks=1, attn_levels=(), z_channels=8, embed_dim=8, n_embed=729))
    save_file(vq.state_dict(), str(tmp_path / "vq.safetensors"))
    save_flow(VectorField(FlowConfig(d=384, width=16, depth=1)), tmp_path / "flow")
    tok = FSQTokenizer(TokenizerConfig())   # the same 8×8 codes of 729
    save_transformer(ImageTransformer(transformer_config(tok, 384)), tmp_path / "transformer")
    r = capgen_cmd("pipeline", "--clip", f"ViT-S-32:{tmp_path / 'vit.safetensors'}", "--tokenizer", str(tmp_path / "vq.safetensors"),
                   "--flow", str(tmp_path / "flow"), "--transformer", str(tmp_path / "transformer"), "--out", str(tmp_path / "p"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "a 384-d CLIP, a tokenizer of 32-px images to 8×8 codes of 729" in r.stdout
    r = capgen_cmd("generate", "a red star", "--pipeline", str(tmp_path / "p"), "-n", "2", "-o", str(tmp_path / "g.png"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "initialized randomly" not in r.stderr      # open_clip's word for a model whose saved weights come next
    assert Image.open(tmp_path / "g.png").size == (2 * 34 + 2, 34 + 2)


def run(argv, capsys) -> tuple[int, str]:
    "`capgen ARGV` in this process: the exit code and stderr."
    try: code = main(argv)
    except SystemExit as e: code = e.code
    return code, capsys.readouterr().err


def refused_cleanly(code, err, want_code, *says):
    lines = err.strip().splitlines()
    assert code == want_code and len(lines) == 1, (code, err)
    for s in says: assert s in lines[0], (s, lines[0])


BAD = {   # what is wrong → (flags changed, exit code, what the line says)
    "unknown open_clip name": ({"clip": "ViT-B-33"}, 2, ["--clip 'ViT-B-33' is no folder, and `name`='ViT-B-33' is not an open_clip model",
                                                        "close: ['ViT-B-32'"]),
    "open_clip name without weights": ({"clip": "ViT-B-32"}, 2, ["--clip 'ViT-B-32' names an open_clip model but not its weights",
                                                                "ViT-B-32:TAG (TAG one of ['openai'"]),
    "a tokenizer file that is not a VQGAN": ({"tokenizer": "{parts}/notes.ckpt"}, 1, ["--tokenizer {parts}/notes.ckpt: not a readable torch checkpoint"]),
    "a tokenizer that is not there": ({"tokenizer": "{parts}/none.ckpt"}, 1, ["--tokenizer {parts}/none.ckpt: no such folder or file"]),
    "a flow of another dimension": ({"flow": "{parts}/flow-64"}, 2, ["--flow samples 64-d embeddings, but --clip embeds in 128-d"]),
    "a grid the tokenizer does not make": ({"transformer": "{parts}/transformer-4"}, 2,
                                           ["--transformer writes 4×4 tokens, but --tokenizer makes 8×8 of its 64-px images"]),
    "a flow as the transformer": ({"transformer": "{parts}/flow"}, 1, ["--transformer {parts}/flow: holds a capgen 'flow', not a transformer"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_pipeline_refuses(case, parts, tmp_path, capsys):
    changes, want, says = BAD[case]
    changes = {k: v.format(parts=parts) for k, v in changes.items()}
    code, err = run(["pipeline", *flags(parts, **changes), "--out", str(tmp_path / "p")], capsys)
    refused_cleanly(code, err, want, *[s.format(parts=parts) for s in says])
    assert list(tmp_path.iterdir()) == []          # nothing written, not even a temporary folder


def test_out_is_a_users_folder(parts, tmp_path, capsys):
    (tmp_path / "mine").mkdir(); (tmp_path / "mine" / "thesis.tex").write_text("mine")
    code, err = run(["pipeline", *flags(parts), "--out", str(tmp_path / "mine")], capsys)
    refused_cleanly(code, err, 2, f"--out: {tmp_path / 'mine'} already holds files capgen did not write")
    assert [p.name for p in tmp_path.iterdir()] == ["mine"] and (tmp_path / "mine" / "thesis.tex").read_text() == "mine"


def test_build_dataset_part_flags_refused(parts, tmp_path, capsys):
    code, err = run(["build-dataset", "shapes:8", "--out", str(tmp_path / "ds"), "--pipeline", str(parts), "--clip",
                     str(parts / "clip"), "--tokenizer", str(parts / "tokenizer")], capsys)
    refused_cleanly(code, err, 2, "--pipeline and both --clip and --tokenizer name the CLIP and the tokenizer twice")
    code, err = run(["build-dataset", "shapes:8", "--out", str(tmp_path / "ds"), "--clip", "ViT-B-33", "--tokenizer", str(parts / "tokenizer")], capsys)
    refused_cleanly(code, err, 2, "--clip 'ViT-B-33' is no folder")
    code, err = run(["build-dataset", "shapes:8", "--out", str(tmp_path / "ds"), "--clip", str(parts / "clip"), "--pipeline", str(parts)], capsys)
    refused_cleanly(code, err, 2, f"--pipeline: {parts} is not a saved pipeline")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("argv", [["demo", "--fast"], ["pipeline", "--clip", "c", "--tokenizer", "t", "--flow", "f", "--transformer", "t"],
                                  ["generate", "a star"], ["eval"], ["build-dataset", "shapes:8"]])
def test_device_cuda_without_a_gpu(argv, tmp_path, capsys):
    code, err = run([*argv, "--out", str(tmp_path / "out"), "--device", "cuda"], capsys)
    refused_cleanly(code, err, 2, "--device cuda: this machine has no CUDA GPU")
    assert list(tmp_path.iterdir()) == []


def test_device_cuda_without_a_gpu_installed_command(tmp_path):
    "The same through the installed command: one line, exit 2, before any work."
    if torch.cuda.is_available(): pytest.skip("this machine has a CUDA GPU")
    r = capgen_cmd("demo", "--fast", "--device", "cuda", "--out", str(tmp_path / "d"))
    assert r.returncode == 2 and r.stderr.strip().splitlines() == ["capgen demo: error: --device cuda: this machine has no CUDA GPU"], r.stderr
    assert list(tmp_path.iterdir()) == []
