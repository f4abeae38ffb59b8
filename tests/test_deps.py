"""The declared floor of each dependency capgen uses a newer API of is at least the release that brought that API:
read from settings.ini (where setup.py takes the requirements from), so it holds whatever versions a machine has."""
import configparser
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]

# distribution: (first release with everything capgen uses of it, what that is and where)
FLOORS = {
    "torch": ("2.6", "torch.serialization.get_unsafe_globals_in_checkpoint, and safe_globals with (class, name) "
                     "pairs (capgen.tokenizer.read_state_dict)"),
    "datasets": ("4.0", "datasets.List(feature, length=d) (capgen.data features)"),
    "pillow": ("9.1", "Image.Resampling, Image.Quantize, Image.Dither (capgen.data, capgen.shapes, capgen.field)"),
    "open-clip-torch": ("2.24", "get_model_preprocess_cfg, list_pretrained_tags_by_model, CLIP(init_logit_scale=) (capgen.clip)"),
    "torchmetrics": ("1.4", "FrechetInceptionDistance / KernelInceptionDistance with a feature module (capgen.eval)"),
    "imageio-ffmpeg": ("0.5", "write_frames(macro_block_size=, ffmpeg_log_level=) (capgen.field)"),
    "einops": ("0.7", "rearrange (capgen.flow)"),
    "matplotlib": ("3.7", "matplotlib.colormaps[...] and 3-D set_box_aspect(zoom=) (capgen.field, capgen.sphere)"),
    "safetensors": ("0.4", "safetensors.torch.load_file / save_file"),
}


def declared() -> dict[str, Requirement]:
    cfg = configparser.ConfigParser(delimiters=["="])
    cfg.read(ROOT / "settings.ini", encoding="utf-8")
    reqs = [Requirement(r) for r in cfg["DEFAULT"]["requirements"].split()]
    return {re.sub(r"[-_.]+", "-", r.name).lower(): r for r in reqs}


def floor(req: Requirement) -> Version | None:
    los = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
    return max(los) if los else None


@pytest.mark.parametrize("dist", list(FLOORS))
def test_declared_floor_covers_what_capgen_uses(dist):
    need, what = FLOORS[dist]
    req = declared().get(dist)
    assert req is not None, f"{dist} is imported by capgen but not declared in settings.ini"
    got = floor(req)
    assert got is not None and got >= Version(need), f"settings.ini declares {req}, but capgen uses {what}, new in {dist} {need}"


def test_the_apis_are_where_the_table_says():
    "The table's APIs exist in the installed versions (so the table names real things)."
    import datasets
    import open_clip
    import torch.serialization
    from PIL import Image
    assert hasattr(datasets, "List") and hasattr(torch.serialization, "get_unsafe_globals_in_checkpoint")
    assert hasattr(torch.serialization, "safe_globals") and hasattr(Image, "Resampling") and hasattr(Image, "Dither")
    assert hasattr(open_clip, "get_model_preprocess_cfg") and hasattr(open_clip, "list_pretrained_tags_by_model")
