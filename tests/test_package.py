"""The exported package works outside the notebooks that define it (no name borrowed from a test cell)."""
import subprocess
import sys


def test_mixture_cdf_in_a_fresh_interpreter():
    code = "from capgen.caps import UniformMixture; print(UniformMixture().cdf([0.5, 1.5]).tolist())"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str([0.95 * 0.5, 0.95 + 0.05 * 0.5])
