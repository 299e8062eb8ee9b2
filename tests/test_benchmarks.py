"""The benchmark scripts run and check nblstm against torch before timing (tiny shapes, one repeat block)."""
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(script, *args):
    proc = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", script), "--quick", "--repeats", "4",
                           *args], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.parametrize("extra", [[], ["--layers", "2", "--bidirectional"]])
def test_bench_lstm_checks_then_times(extra):
    pytest.importorskip("torch")
    out = _run("bench_lstm.py", "--shapes", "5,2,3,4", *extra)
    row = re.search(r"^\| 5, 2, 3, 4 \|.*\| ([0-9.e+-]+) \|$", out, re.M)
    assert row and float(row.group(1)) < 1e-4, out


def test_bench_padded_checks_against_torch_packed_sequences_then_times():
    pytest.importorskip("torch")
    out = _run("bench_padded.py", "--shapes", "6,4,3,5")
    row = re.search(r"^\| 6, 4, 3, 5 \| [0-9.]+ \|(?: [0-9.]+ \|){4}(?: \*?\*?[0-9.]+\*?\*? \|){3} ([0-9.e+-]+) \|$",
                    out, re.M)
    assert row and float(row.group(1)) < 1e-4, out
