"""The prompt explorer in a real browser: JupyterLab, driven by headless Chromium through Selenium, runs a notebook
that displays `prompt_explorer(pipe).widget` for a tiny untrained pipeline; the test types a prompt, moves the slider
and ticks 'auto size' as a user would, and checks after each step that the picture and the line under it changed.

Needs Debian's `chromium` and `chromium-driver` and `pip install selenium`; skipped without them. Run it with
`pytest tests/test_browser.py -m browser -v`; with `CAPGEN_SCREENSHOTS=DIR` it saves a screenshot of each step
there (`explorer-1.png` ...). Everything it writes, JupyterLab's and Chromium's settings included, stays in a
temporary folder, and JupyterLab is shut down at the end, also when the test fails."""
import base64
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
CHROMEDRIVER = shutil.which("chromedriver")

SETUP = """\
import warnings
warnings.simplefilter("ignore", FutureWarning)    # a library's deprecation notices: not what the pictures are about
from dataclasses import replace
import torch
from capgen.clip import ClipConfig, Embedder
from capgen.flow import FlowConfig, VectorField
from capgen.pipeline import TextToImage, prompt_explorer
from capgen.tokenizer import FSQTokenizer, TokenizerConfig
from capgen.transformer import ImageTransformer
from capgen.transformer_training import default_configs

torch.set_num_threads(1)
torch.manual_seed(0)     # a tiny untrained pipeline: its images are noise, but every control works as with a trained one
tok, emb = FSQTokenizer(TokenizerConfig()), Embedder.from_config(ClipConfig())
cfg0, _, _ = default_configs(tok, emb)
pipe = TextToImage(emb, VectorField(FlowConfig(d=emb.dim, width=32, depth=1)),
                   ImageTransformer(replace(cfg0, d_model=32, n_heads=2, n_layers=1)), tok)"""
SHOW = "explorer = prompt_explorer(pipe)\nexplorer.widget"
LINE = re.compile(r"^(\d+)/8 images inside the cap of d_max (\d\.\d\d)( \(auto size: .*\))?$")


def notebook() -> dict:
    cell = lambda i, src: {"cell_type": "code", "execution_count": None, "id": f"cell{i}", "metadata": {}, "outputs": [],
                           "source": src}
    return {"cells": [cell(0, SETUP), cell(1, SHOW)], "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
                         "language_info": {"name": "python"}}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def private_env(tmp: Path) -> dict:
    "The environment with every place JupyterLab, IPython, matplotlib and Chromium write settings or caches in `tmp`."
    home = tmp / "home"
    dirs = dict(HOME=home, XDG_CONFIG_HOME=home / ".config", XDG_CACHE_HOME=home / ".cache", XDG_DATA_HOME=home / ".local/share",
                JUPYTER_CONFIG_DIR=tmp / "jupyter/config", JUPYTER_DATA_DIR=tmp / "jupyter/data",
                JUPYTER_RUNTIME_DIR=tmp / "jupyter/runtime", JUPYTERLAB_SETTINGS_DIR=tmp / "jupyter/settings",
                JUPYTERLAB_WORKSPACES_DIR=tmp / "jupyter/workspaces", IPYTHONDIR=tmp / "ipython",
                MPLCONFIGDIR=tmp / "matplotlib", CAPGEN_CACHE=tmp / "capgen-cache", SE_CACHE_PATH=tmp / "selenium")
    for d in dirs.values(): d.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **{k: str(v) for k, v in dirs.items()}}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"   # the kernel: this interpreter
    env.pop("IN_TEST", None)
    # no news pop-up in the screenshots
    notes = dirs["JUPYTERLAB_SETTINGS_DIR"] / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notes.parent.mkdir(parents=True, exist_ok=True)
    notes.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    return env


class JupyterLab:
    "JupyterLab serving `root` on a free localhost port with a random token; `stop` shuts it down and its kernels."
    def __init__(self, root: Path, env: dict, log: Path):
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._log = open(log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
             "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}", f"--notebook-dir={root}",
             "--LabApp.news_url=None", "--LabApp.extension_manager=readonly"]
            + (["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
            cwd=root, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def api(self, path: str, method: str = "GET"):
        req = urllib.request.Request(f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=5) as r: return r.read()

    def wait(self, timeout: float = 90):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None: raise RuntimeError(f"JupyterLab exited:\n{self.log.read_text()[-3000:]}")
            try: return json.loads(self.api("/api/status"))
            except OSError: time.sleep(0.5)
        raise TimeoutError(f"JupyterLab did not answer in {timeout} s:\n{self.log.read_text()[-3000:]}")

    def stop(self):
        if self.proc.poll() is None:
            try: self.api("/api/shutdown", "POST")      # shuts its kernels down too
            except OSError: pass
            try: self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGTERM)   # its own process group: the server and its kernels
                try: self.proc.wait(10)
                except subprocess.TimeoutExpired: os.killpg(self.proc.pid, signal.SIGKILL); self.proc.wait()
        self._log.close()


def needs_browser():
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("needs Chromium and its driver: apt-get install chromium chromium-driver")
    try: import selenium  # noqa: F401
    except ImportError: pytest.skip("needs selenium: pip install 'selenium>=4'")
    try: import jupyterlab, ipywidgets  # noqa: F401,E401
    except ImportError: pytest.skip("needs jupyterlab and ipywidgets (the dev extra)")


def chromium(tmp: Path, env: dict):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900",
                "--hide-scrollbars", "--no-first-run", "--no-default-browser-check", f"--user-data-dir={tmp / 'chromium'}",
                f"--disk-cache-dir={tmp / 'chromium-cache'}"):
        opts.add_argument(arg)
    service = Service(executable_path=CHROMEDRIVER, env=env, log_output=str(tmp / "chromedriver.log"))
    return webdriver.Chrome(service=service, options=opts)


JS_PICTURE = """
const done = arguments[arguments.length - 1];
const img = document.querySelector('img.capgen-explorer-image');
if (!img || !img.src) { done(null); return; }
fetch(img.src).then(r => r.arrayBuffer()).then(b => {
  const a = new Uint8Array(b); let s = '';
  for (let i = 0; i < a.length; i += 0x8000) s += String.fromCharCode.apply(null, a.subarray(i, i + 0x8000));
  done([img.src, btoa(s), img.naturalWidth, img.naturalHeight]);
}).catch(e => done(['error', String(e), 0, 0]));
"""


def test_prompt_explorer_in_jupyterlab(tmp_path):
    needs_browser()
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    shots = os.environ.get("CAPGEN_SCREENSHOTS")
    shots = Path(shots).resolve() if shots else None
    root = tmp_path / "work"
    root.mkdir()
    (root / "explorer.ipynb").write_text(json.dumps(notebook(), indent=1))
    env = private_env(tmp_path)
    lab = driver = None
    try:
        lab = JupyterLab(root, env, tmp_path / "jupyterlab.log")
        lab.wait()
        driver = chromium(tmp_path, env)
        driver.set_script_timeout(30)

        def page_errors() -> str:
            outs = driver.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output")
            return "\n".join(o.text for o in outs)[-3000:] + f"\n--- JupyterLab's log:\n{lab.log.read_text()[-2000:]}"

        def until(what: str, cond, timeout: float = 60):
            try: return WebDriverWait(driver, timeout, poll_frequency=0.25).until(lambda d: cond())
            except TimeoutException: pytest.fail(f"timed out waiting for {what}; the page's outputs:\n{page_errors()}")

        def one(css: str):
            found = driver.find_elements(By.CSS_SELECTOR, css)
            return found[0] if found else None

        def picture():
            "The grid as the page shows it: (src, PNG bytes, width, height), None until it is drawn."
            got = driver.execute_async_script(JS_PICTURE)
            if not got: return None
            assert got[0] != "error", got[1]
            return got[0], base64.b64decode(got[1]), got[2], got[3]

        def line() -> str:
            el = one(".capgen-explorer-status")
            return el.text.strip() if el else ""

        def settled(before, want=lambda text: True, what: str = "the explorer to redraw", timeout: float = 60):
            """Wait for a new picture (its src and its bytes both differ from `before`'s) under a line that says what
            `want` asks; return them."""
            def new():
                p, text = picture(), line()
                if p and p[2] > 0 and p[0] != before[0][0] and p[1] != before[0][1] and LINE.match(text) and want(text):
                    return p, text
            return until(what, new, timeout)

        def shot(i: int):
            if shots is None: return
            shots.mkdir(parents=True, exist_ok=True)
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", one(".capgen-explorer"))
            time.sleep(0.5)
            driver.save_screenshot(str(shots / f"explorer-{i}.png"))

        driver.get(f"{lab.url}/lab/tree/explorer.ipynb?token={lab.token}")
        until("JupyterLab to open the notebook", lambda: one(".jp-NotebookPanel .jp-Cell .jp-InputArea-editor"), 90)
        until("the kernel to start", lambda: any(re.search(r"\| Idle$", e.text.strip())
                                                 for e in driver.find_elements(By.CSS_SELECTOR, ".jp-StatusBar-TextItem")), 90)
        time.sleep(1)
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.CONTROL, "b")   # hide the file browser: more room

        def run_all():
            "Run ▸ Run All Cells, from the menu bar."
            until("the Run menu", lambda: next((m for m in driver.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item")
                                                if m.text.strip() == "Run"), None)).click()
            until("Run All Cells", lambda: next((m for m in driver.find_elements(By.CSS_SELECTOR, ".lm-Menu-item")
                                                 if m.text.strip() == "Run All Cells"), None)).click()

        def started() -> bool:
            "Has the first cell run, or is it running (its prompt [1] or [*])?"
            prompts = driver.find_elements(By.CSS_SELECTOR, ".jp-CodeCell .jp-InputPrompt")
            return bool(prompts) and prompts[0].text.strip() not in ("[ ]:", "")

        run_all()
        try: WebDriverWait(driver, 20, poll_frequency=0.25).until(lambda d: started())
        except TimeoutException: run_all()      # a kernel still connecting can drop the first request

        first = until("the explorer's first picture", lambda: (p := picture()) and p[2] > 0 and LINE.match(line()) and (p, line()), 180)
        (src0, png0, w0, h0), line0 = first
        assert png0.startswith(b"\x89PNG") and w0 > h0 > 0, (w0, h0)     # eight images, four to a row
        assert LINE.match(line0).group(2) == "0.50" and not LINE.match(line0).group(3), line0
        shot(1)

        # type a new prompt, then Enter
        box = one(".capgen-explorer-prompt input")
        box.click()
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys("a large blue heart in the centre", Keys.ENTER)
        after_prompt = settled(first)
        assert LINE.match(after_prompt[1]).group(2) == "0.50", after_prompt[1]

        # the slider: its handle takes the arrow keys, one step (0.05) a press: 0.50 -> 1.00
        handle = one(".capgen-explorer-d-max .noUi-handle")
        handle.click()
        for _ in range(10): handle.send_keys(Keys.ARROW_RIGHT)
        after_slider = settled(after_prompt, lambda text: LINE.match(text).group(2) == "1.00", "the line to say d_max 1.00", 120)
        shot(2)

        # auto size: the cap picks its own size, and the line says so
        one(".capgen-explorer-auto input[type='checkbox']").click()
        after_auto = settled(after_slider, lambda text: LINE.match(text).group(3), "the line to give the auto size", 120)
        assert one(".capgen-explorer-d-max [disabled]") is not None, "the slider stays enabled under auto size"
        shot(3)

        # an empty prompt: a message where the pictures were, and no error in the page
        box.click()
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(Keys.BACKSPACE, Keys.ENTER)
        until("the empty prompt's message", lambda: line().startswith("No images:") and "empty caption" in line())
        shown = driver.find_elements(By.CSS_SELECTOR, ".jp-CodeCell")[1]
        assert not shown.find_elements(By.CSS_SELECTOR, "[data-mime-type='application/vnd.jupyter.stderr']"), page_errors()
    finally:
        if driver is not None: driver.quit()
        if lab is not None: lab.stop()
