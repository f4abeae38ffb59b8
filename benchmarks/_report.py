"""What every benchmark script does with its result: print the Markdown table and write it where the docs read it."""
from __future__ import annotations

import os
import platform
import re
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name as `lscpu` prints it (read from /proc/cpuinfo on Linux), else what `platform` knows, with
    whether it computes bfloat16 natively and, on Linux, whether it has AMX matrix units: machines that print the same
    name differ by 2x and more with these (the bfloat16 parts, tokenizer and transformer, most)."""
    name, amx = platform.processor() or platform.machine(), ""
    try:
        info = Path("/proc/cpuinfo").read_text()
        if m := re.search(r"^model name\s*:\s*(.+)$", info, flags=re.M): name = m.group(1).strip()
        if m := re.search(r"^flags\s*:\s*(.+)$", info, flags=re.M): amx = ", AMX" if "amx_bf16" in m.group(1).split() else ", no AMX"
    except OSError: pass
    from capgen.training import native_bf16
    return f"{name} ({os.cpu_count()} CPUs, {'native' if native_bf16('cpu') else 'no native'} bfloat16{amx})"


def publish(lines: list[str], out: Path) -> str:
    "Join `lines` into Markdown, print it, and write it to `out` (creating its folder)."
    text = "\n".join(lines) + "\n"
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text
