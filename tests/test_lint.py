"""pyflakes over the package: no undefined names. A notebook's tests can pass with one, when a test cell happens to
define a global of that name that the exported function then reads; the package would raise `NameError`."""
import io
from pathlib import Path

from pyflakes.api import checkPath
from pyflakes.reporter import Reporter

PACKAGE = Path(__file__).resolve().parents[1] / "capgen"


def undefined_names(paths) -> list[str]:
    out = io.StringIO()
    report = Reporter(out, out)
    for p in paths: checkPath(str(p), report)
    return [line for line in out.getvalue().splitlines() if "undefined name" in line]


def test_no_undefined_names():
    bad = undefined_names(sorted(PACKAGE.glob("*.py")))
    assert not bad, "undefined names in the package:\n" + "\n".join(bad)


def test_catches_one(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def rim(x):\n    return x * d\n")
    assert len(undefined_names([f])) == 1
