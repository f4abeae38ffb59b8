"""What every benchmark script does with its result: print the Markdown table and write it where the docs read it."""
from __future__ import annotations

from pathlib import Path


def publish(lines: list[str], out: Path) -> str:
    "Join `lines` into Markdown, print it, and write it to `out` (creating its folder)."
    text = "\n".join(lines) + "\n"
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text
