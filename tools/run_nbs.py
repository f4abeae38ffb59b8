"""Execute notebooks with nbclient, as their docs pages show them, keeping every cell in place.

`python tools/run_nbs.py [NB ...]` executes the given notebooks (default: every page in nbs/) in place, so
the committed notebooks, and so the docs, carry real outputs; run `nbdev_clean` afterwards. Cells flagged
with `--skip-flags` (e.g. `--skip-flags cuda` on a machine without a GPU) are left unexecuted. The tests use `execute`.
"""
from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"


def pages() -> list[Path]:
    "The notebooks that are docs pages: every notebook in nbs/ not starting with `_`."
    return sorted(p for p in NBS.glob("*.ipynb") if not p.name.startswith("_"))


def cell_flags(cell) -> set[str]:
    "Words of the cell's `#|` directives, e.g. {'slow'} for `#| slow`."
    words = set()
    for line in cell.source.splitlines():
        m = re.match(r"\s*#\|\s*(.*)", line)
        if m:
            words.update(m.group(1).replace(":", " ").split())
    return words


LOCAL_PATH = re.compile(r"(/[\w.-]+)+/site-packages/")   # where this machine installed the packages


def drop_local_warnings(cell):
    "Remove the stderr outputs that name a file of this machine's installation (library warnings: not the page's)."
    cell.outputs = [o for o in cell.get("outputs", []) if not (o.get("output_type") == "stream" and o.get("name") == "stderr"
                                                             and LOCAL_PATH.search(o.get("text", "")))]


def execute(path: Path, skip_flags=(), in_test: bool = False, timeout: int = 3600):
    "Run the notebook at `path` from its own folder; cells carrying any of `skip_flags` are not run."
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(Path(path).parent)}})
    old = os.environ.get("IN_TEST")
    if in_test:
        os.environ["IN_TEST"] = "1"
    else:
        os.environ.pop("IN_TEST", None)
    try:
        with client.setup_kernel():
            for i, cell in enumerate(nb.cells):
                if cell.cell_type == "code" and not cell_flags(cell) & set(skip_flags):
                    client.execute_cell(cell, i)
                    drop_local_warnings(cell)
    finally:
        if old is None:
            os.environ.pop("IN_TEST", None)
        else:
            os.environ["IN_TEST"] = old
    return nb


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("notebooks", nargs="*", type=Path, help="default: every docs page in nbs/")
    p.add_argument("--skip-flags", default="", help='leave cells with these flags unexecuted, e.g. "slow cuda"')
    args = p.parse_args(argv)
    for path in args.notebooks or pages():
        t0 = time.perf_counter()
        nb = execute(path, args.skip_flags.split())
        nbformat.write(nb, path)
        print(f"{path.name}: {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
