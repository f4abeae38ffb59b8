"""The installed package is the one settings.ini describes, and its environment is consistent."""
import subprocess
import sys
from configparser import ConfigParser
from importlib import metadata
from pathlib import Path

import capgen

ROOT = Path(__file__).resolve().parents[1]


def settings():
    cfg = ConfigParser(delimiters=["="])
    cfg.read(ROOT / "settings.ini", encoding="utf-8")
    return cfg["DEFAULT"]


def installed_requirements(extra=None) -> set[str]:
    out = set()
    for req in metadata.requires("capgen") or []:
        spec, _, marker = req.partition(";")
        is_extra = "extra ==" in marker
        if (extra is None and not is_extra) or (extra is not None and f'extra == "{extra}"' in marker):
            out.add(spec.replace(" ", ""))
    return out


def test_dependencies_are_declared_once_in_settings():
    cfg = settings()
    assert installed_requirements() == set(cfg["requirements"].split())
    assert installed_requirements("dev") == set(cfg["dev_requirements"].split())


def test_versions_agree():
    assert capgen.__version__ == settings()["version"] == metadata.version("capgen")


def test_installed_from_this_checkout():
    assert Path(capgen.__file__).resolve().parent == ROOT / "capgen"


def test_nbdev_2_reads_settings_ini():
    import nbdev
    from nbdev.config import get_config
    assert nbdev.__version__.startswith("2.")
    cfg = get_config(path=ROOT)
    assert cfg.lib_name == "capgen" and Path(cfg.nbs_path).resolve() == ROOT / "nbs"


def test_pip_check():
    r = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_manifest_names_files_that_exist():
    "Each file MANIFEST.in includes is in the repository (a source distribution would otherwise lack it silently)."
    names = [line.split()[1:] for line in (ROOT / "MANIFEST.in").read_text().splitlines() if line.startswith("include ")]
    missing = [n for ns in names for n in ns if not list(ROOT.glob(n))]
    assert names and not missing, missing
