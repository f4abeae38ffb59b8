"""The docs pages: every committed notebook renders to HTML with its figures (Quarto's stand-in here); `nbdev_test`
executes them."""
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
import yaml
from nbconvert import HTMLExporter

import run_nbs

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
MIN_FIGURES = {"00_sphere": 1, "01_caps": 2, "02_training": 4, "02a_vmf": 1, "03_flow": 3, "04_field": 4, "05_shapes": 4, "06_clip": 1, "07_tokenizer": 2, "08_data": 1, "09a_transformer_training": 3, "10_pipeline": 2, "11_eval": 4, "11a_demo": 4, "12_cli": 2, "08b_images": 1, "11c_digits": 6}   # pages whose prose refers to pictures


def image_outputs(nb) -> int:
    return sum("image/png" in out.get("data", {}) for c in nb.cells if c.cell_type == "code" for out in c.outputs)


def test_quarto_config_is_real():
    quarto = yaml.safe_load((NBS / "_quarto.yml").read_text())
    assert quarto["project"]["type"] == "website"
    for name in quarto["metadata-files"]:
        assert (NBS / name).exists(), name
    assert yaml.safe_load((NBS / "nbdev.yml").read_text())["project"]["output-dir"] == "_docs"
    assert (NBS / "styles.css").exists()


def test_sidebar_lists_every_page():
    def entries(items):
        for it in items:
            yield from entries(it["contents"]) if isinstance(it, dict) else [it]
    sidebar = yaml.safe_load((NBS / "sidebar.yml").read_text())["website"]["sidebar"]["contents"]
    assert sorted(entries(sidebar)) == [p.name for p in run_nbs.pages()]


@pytest.mark.parametrize("page", run_nbs.pages(), ids=lambda p: p.stem)
def test_committed_page_carries_its_outputs(page):
    "Quarto renders the committed notebooks: they must hold their figures and their recorded results."
    nb = nbformat.read(page, as_version=4)
    assert image_outputs(nb) >= MIN_FIGURES.get(page.stem, 0)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    if page.stem == "01_caps":
        outputs = json.dumps([c.outputs for c in nb.cells if c.cell_type == "code"])
        assert "sample_in_cap / floor" in outputs, "benchmark table missing from the caps page"


@pytest.mark.parametrize("page", run_nbs.pages(), ids=lambda p: p.stem)
def test_committed_outputs_name_no_local_installation(page):
    "A page's outputs say nothing of the machine that ran it, such as a library warning naming its site-packages."
    nb = nbformat.read(page, as_version=4)
    text = "".join(json.dumps(c.outputs) for c in nb.cells if c.cell_type == "code")
    assert not run_nbs.LOCAL_PATH.search(text), run_nbs.LOCAL_PATH.search(text).group(0)


@pytest.mark.parametrize("page", run_nbs.pages(), ids=lambda p: p.stem)
def test_page_renders(page, tmp_path):
    """The committed page, as the docs site renders it (nbdev_test, the README's first test step, has executed every
    page already: executing them again here would only double the time)."""
    nb = nbformat.read(page, as_version=4)
    body, _ = HTMLExporter().from_notebook_node(nb)
    html = tmp_path / f"{page.stem}.html"
    html.write_text(body, encoding="utf-8")
    assert html.stat().st_size > 0
    title = next(c.source for c in nb.cells if c.cell_type == "markdown").splitlines()[0].lstrip("# ").strip()
    assert title in body
    n_img = len(re.findall(r'<img[^>]+src="data:image/png;base64,', body))
    assert n_img == image_outputs(nb) >= MIN_FIGURES.get(page.stem, 0), (n_img, image_outputs(nb))
    assert "Traceback" not in body


ANIMATIONS = {"flow_plain.mp4": (150, (400, 400)), "flow_cap.mp4": (150, (400, 400)), "flow_cap.gif": (150, (400, 400))}


class MediaTags(HTMLParser):
    "Collects (tag, src) of every <video>/<img> whose src is not inline data; attribute order does not matter."
    def __init__(self):
        super().__init__()
        self.found = set()

    def handle_starttag(self, tag, attrs):
        src = dict(attrs).get("src") or ""
        if tag in ("video", "img") and not src.startswith("data:"): self.found.add((tag, src))


def test_field_page_carries_its_animations(tmp_path):
    "The flow's animations are files beside the page (Quarto resources), shown by tags in the rendered HTML."
    from capgen.field import media_info
    page = NBS / "04_field.ipynb"
    nb = nbformat.read(page, as_version=4)
    body, _ = HTMLExporter().from_notebook_node(nb)
    # nbconvert sanitises HTML outputs and rewrites their tags (attributes sorted, `muted` -> `muted=""`),
    # so the tags are found by parsing, not by matching the text the notebook wrote.
    tags = MediaTags()
    tags.feed(body)
    for name, info in ANIMATIONS.items():
        src = f"media/{name}"
        tag = "video" if name.endswith(".mp4") else "img"
        assert (tag, src) in tags.found, (f"{src} not shown on the page", tags.found)
        assert (NBS / src).exists(), src
        assert media_info(NBS / src) == info, (src, media_info(NBS / src))
    quarto = yaml.safe_load((NBS / "_quarto.yml").read_text())
    assert "media/*" in quarto["project"]["resources"]


DOCS_PROC = """
import nbdev.quarto
nbdev.quarto._ensure_quarto = lambda: None   # Quarto itself is the one step left out: it cannot be installed here
nbdev.quarto._pre_docs(n_workers=2)          # what `nbdev_docs` runs before handing the pages to Quarto
"""


def test_nbdev_docs_processing(tmp_path):
    """nbdev's own processing of every notebook, as `nbdev_docs` runs it (it executes each cell that holds an
    import, so such a cell must not use names from cells it skips); a copy of the project keeps the tree clean."""
    for name in ("nbs", "capgen"): shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "settings.ini", tmp_path)
    r = subprocess.run([sys.executable, "-c", DOCS_PROC], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    done = {p.name for p in (tmp_path / "_proc").glob("*.ipynb")}
    assert done == {p.name for p in NBS.glob("*.ipynb")}, done
    assert "Error in notebook" not in r.stderr


def test_home_picture_is_the_pipeline_pages_output():
    "The home page's picture is exactly the figure the pipeline page computed (its committed output), not a stale copy."
    import base64
    nb = nbformat.read(NBS / "10_pipeline.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith("prompts = [") and "gen.show()" in c.source)
    png = next(o.data["image/png"] for o in cell.outputs if "image/png" in o.get("data", {}))
    assert (NBS / "media" / "home.png").read_bytes() == base64.b64decode(png)
    assert "media/home.png" in (NBS / "index.ipynb").read_text()


API_METHODS = {   # public methods defined inside classes: nbdev documents only top-level definitions by itself
    "01_caps": ["Cap.from_direction", "Cap.from_angle", "Cap.distance", "Cap.contains", "UniformMixture.cdf", "UniformMixture.sample"],
    "01b_config": ["TrainConfig.save", "TrainConfig.load"],
    "01c_checkpoints": ["TrainConfig.from_checkpoint"],
    "02a_vmf": ["VMFMixture.log_prob", "VMFMixture.sample", "VMFMixture.entropy"],
    "05_shapes": ["ShapesWorld.scene", "ShapesWorld.image", "ShapesWorld.images", "ShapesWorld.attributes"],
    "06_clip": ["Embedder.embed_images", "Embedder.embed_texts", "Embedder.to"],
    "07_tokenizer": ["Tokenizer.encode", "Tokenizer.decode", "Tokenizer.reconstruct"],
    "07b_sources": ["Source.read", "Source.decode", "Source.fingerprint", "ShardedSource.read_shard"],
    "09_transformer": ["ImageTransformer.cond_tokens", "ImageTransformer.prefill", "ImageTransformer.step"],
    "10_pipeline": ["Generation.grid", "Generation.show", "TextToImage.generate", "TextToImage.save", "TextToImage.load", "TextToImage.to",
                    "PromptExplorer.update"],
}
DOCUMENTED_PARAMETERS = ["capgen.pipeline.TextToImage.generate", "capgen.pipeline.TextToImage.save", "capgen.pipeline.TextToImage.load",
                         "capgen.pipeline.Generation.grid", "capgen.pipeline.Generation.show", "capgen.clip.Embedder.embed_images",
                         "capgen.clip.Embedder.embed_texts", "capgen.pipeline.PromptExplorer.__init__",
                         "capgen.pipeline.PromptExplorer.update"]


@pytest.mark.parametrize("page", sorted(API_METHODS))
def test_public_methods_have_api_entries(page):
    cells = [c.source for c in nbformat.read(NBS / f"{page}.ipynb", as_version=4).cells if c.cell_type == "code"]
    missing = [m for m in API_METHODS[page] if f"show_doc({m})" not in cells]
    assert not missing, missing


@pytest.mark.parametrize("name", DOCUMENTED_PARAMETERS)
def test_parameters_are_documented(name):
    "Each parameter carries a docments comment, which nbdev shows beside it."
    import importlib
    from fastcore.docments import docments
    mod, cls, meth = name.rsplit(".", 2)
    f = getattr(getattr(importlib.import_module(mod), cls), meth)
    undocumented = [k for k, v in docments(f).items() if k not in ("self", "cls", "return") and not v]
    assert not undocumented, undocumented
