"""The exported package works outside the notebooks that define it (no name borrowed from a test cell), and its
import graph follows the chapters' reading order."""
import ast
import re
import subprocess
import sys
from pathlib import Path


def test_mixture_cdf_in_a_fresh_interpreter():
    code = "from capgen.caps import UniformMixture; print(UniformMixture().cdf([0.5, 1.5]).tolist())"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str([0.95 * 0.5, 0.95 + 0.05 * 0.5])


ROOT = Path(__file__).resolve().parents[1]


def _module_order() -> dict[str, int]:
    "Each module's place in reading order: the sorted position of the notebook that exports it."
    notebooks = sorted((ROOT / "nbs").glob("[0-9]*.ipynb"))
    mods = [re.search(r"#\|\s*default_exp\s+(\w+)", nb.read_text()).group(1) for nb in notebooks]
    return {m: i for i, m in enumerate(mods)}


def _capgen_imports(module: str, known) -> set[str]:
    deps = set()
    for n in ast.walk(ast.parse((ROOT / "capgen" / f"{module}.py").read_text())):
        if isinstance(n, ast.ImportFrom):
            if n.level == 1 and n.module: deps.add(n.module.split(".")[0])
            elif n.module and n.module.startswith("capgen."): deps.add(n.module.split(".")[1])
            elif n.module == "capgen" or (n.level == 1 and not n.module): deps.update(a.name for a in n.names)
        elif isinstance(n, ast.Import):
            deps.update(a.name.split(".")[1] for a in n.names if a.name.startswith("capgen."))
    return deps & set(known)


def test_imports_follow_reading_order():
    "Every module imports only modules of earlier chapters, at the top or inside a function: nothing points back up."
    order = _module_order()
    assert len(order) == len(list((ROOT / "capgen").glob("*.py"))) - 2   # every module but __init__ and _modidx
    up = {m: sorted(d for d in _capgen_imports(m, order) if order[d] >= order[m]) for m in order}
    assert not {m: d for m, d in up.items() if d}, up
    assert _capgen_imports("transformer_training", order) >= {"transformer", "training"}   # the check sees imports
