"""Write README.md from nbs/index.ipynb, the docs home page (what `nbdev_readme` does through Quarto).

Markdown cells are copied; code cells appear as Python blocks followed by their text outputs, except cells
marked `#| hide` (left out) and `#| echo: false` (output only). `--check` exits 1 if README.md is stale.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIRECTIVE = re.compile(r"^#\|\s*(.*)$")
# A relative link in the home page (a page, a picture) is relative to nbs/; README.md sits at the root.
PAGE_LINK = re.compile(r"\]\((?![a-z]+:|/|#)([^)\s]+)\)")


def _from_root(text: str) -> str:
    return PAGE_LINK.sub(lambda m: f"]({os.path.normpath(os.path.join('nbs', m.group(1)))})", text)


def _directives(source: str) -> tuple[set[str], str]:
    "The cell's `#|` directives, and its source without them."
    flags, body = set(), []
    for line in source.splitlines():
        m = DIRECTIVE.match(line.strip())
        if m:
            flags.add(m.group(1).strip())
        else:
            body.append(line)
    return flags, "\n".join(body).strip("\n")


def _text_outputs(cell: dict) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append("".join(out["text"]))
        elif "text/markdown" in out.get("data", {}):
            return "".join(out["data"]["text/markdown"])
        elif "text/plain" in out.get("data", {}):
            parts.append("".join(out["data"]["text/plain"]))
    return "".join(parts).rstrip("\n")


def readme_text(nb_path: Path = ROOT / "nbs" / "index.ipynb") -> str:
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    blocks = []
    for cell in nb["cells"]:
        flags, body = _directives("".join(cell["source"]))
        if cell["cell_type"] == "markdown":
            blocks.append(_from_root(body))
        elif cell["cell_type"] == "code" and "hide" not in flags:
            if body and "echo: false" not in flags:
                blocks.append(f"```python\n{body}\n```")
            out = _text_outputs(cell)
            if out:
                out = _from_root(out) if "echo: false" in flags else out
                blocks.append(out if "echo: false" in flags else f"```\n{out}\n```")
    header = "<!-- Generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file. -->"
    return header + "\n\n" + "\n\n".join(b for b in blocks if b) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if README.md differs from the notebook")
    args = p.parse_args(argv)
    text, readme = readme_text(), ROOT / "README.md"
    if args.check:
        if readme.read_text(encoding="utf-8") != text:
            print("README.md is out of date: run `python tools/make_readme.py`", file=sys.stderr)
            return 1
        return 0
    readme.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
