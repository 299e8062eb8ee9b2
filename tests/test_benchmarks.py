"""The benchmark scripts run and check nblstm against torch before timing (tiny shapes, one repeat block)."""
import json
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


def test_bench_steps_reports_time_and_page_faults_of_a_source(tmp_path):
    """bench_steps.py imports nblstm from --source: the package found elsewhere (here a link to this checkout's, so
    that numba's cache beside its files serves it: a copy compiled every kernel again, ~90 s of the suite) is the one
    it reports."""
    os.symlink(os.path.join(REPO, "nblstm"), tmp_path / "nblstm", target_is_directory=True)
    out = _run("bench_steps.py", "--shapes", "5,2,3,4", "--source", str(tmp_path))
    assert f"from {tmp_path}," in out, out
    assert re.search(r"^\| 5, 2, 3, 4 \| [0-9.]+ \| [0-9]+ \|$", out, re.M), out


def test_bench_gemm_checks_then_times_each_kind_of_product():
    """bench_gemm.py times nblstm's own product on each kind of product (packed each call, packed once, A^T B) after
    checking it against NumPy, and refuses a malformed product."""
    out = _run("bench_gemm.py", "--repeats", "3", "--products", "7x5x3", "p:1x9x70", "t:8x33x20")
    for name, dims in (("A B \\(B packed each call\\)", "7 x 5 x 3"), ("A B \\(B packed once\\)", "1 x 9 x 70"),
                       ("A\\^T B, adding into C", "8 x 33 x 20")):
        assert re.search(rf"^\\| {name} \\| {dims} \\| [0-9.]+ \\| [0-9.]+ \\|$", out, re.M), out
    proc = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "bench_gemm.py"), "--products", "5x4"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2 and "expected MxKxN" in proc.stderr, proc.stderr


def test_bench_padded_checks_against_torch_packed_sequences_then_times():
    pytest.importorskip("torch")
    out = _run("bench_padded.py", "--shapes", "6,4,3,5")
    row = re.search(r"^\| 6, 4, 3, 5 \| [0-9.]+ \|(?: [0-9.]+ \|){4}(?: \*?\*?[0-9.]+\*?\*? \|){3} ([0-9.e+-]+) \|$",
                    out, re.M)
    assert row and float(row.group(1)) < 1e-4, out


def _run_all(tmp_path, *args, env=None):
    """bench_all.py on tiny shapes -> (stdout, its JSON report)."""
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "bench_all.py"), "--quick", "--repeats",
                           "4", "--shapes", "5,2,3,4", "--large-shapes", "5,2,3,4", "--plot",
                           str(tmp_path / "cpu_times.png"), "--json", str(report), *args],
                          capture_output=True, text=True, timeout=600, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(report) as f:
        return proc.stdout, json.load(f)


def test_bench_all_one_layer_tables_gemm_reference_and_plot(tmp_path):
    pytest.importorskip("torch")
    out, rep = _run_all(tmp_path, "--sections", "train", "infer", "gemm", "plot")
    for title in ("## 1. Forward + backward", "## 2. Inference forward", "## 3. Large shapes", "## 8. Plot"):
        assert title in out, out
    (row,) = rep["one_layer"]
    assert row["err"] < 1e-4 and row["large"]
    assert set(row["ms"]) == {"fwd", "fb", "infer"}
    assert set(row["ms"]["fb"]) == set(row["ms"]["infer"]) == {"nblstm", "torch", "plain", "layer GEMMs"}
    assert re.search(r"^\| 5, 2, 3, 4 \| f\+b \|.*\*\*\d+%\*\*", out, re.M), out
    assert "load average" in out
    if rep["plot"] is not None:                 # None: matplotlib missing, the run says so
        assert os.path.getsize(tmp_path / "cpu_times.png") > 0


def test_bench_all_stacked_and_float64(tmp_path):
    pytest.importorskip("torch")
    out, rep = _run_all(tmp_path, "--sections", "stacked", "float64", "--stacked", "2b")
    (st,) = rep["stacked"]
    assert (st["layers"], st["bidirectional"]) == (2, True) and st["err"] < 1e-4
    assert set(st["ms"]) == {"nblstm", "torch"}
    (f64,) = rep["float64"]
    assert f64["err"] < 1e-8, f64
    assert re.search(r"^\| 2 \| yes \| 5, 2, 3, 4 \|", out, re.M), out


def test_bench_all_startup_and_memory(tmp_path):
    pytest.importorskip("torch")
    out, rep = _run_all(tmp_path, "--sections", "startup", "memory")
    warm = rep["startup"]["warm"]
    assert warm["import_s"] > 0 and warm["first_call_s"] > 0 and warm["process_s"] > warm["first_call_s"]
    if rep["memory"] is not None:               # None: not Linux
        (m,) = rep["memory"]
        assert m["shape"] == [5, 2, 3, 4] and m["tape_mb"] == 7 * 5 * 2 * 4 * 4 / 2 ** 20 and "torch_peak_mb" in m
    assert "| warm |" in out, out


def test_bench_all_without_torch_checks_against_the_reference(tmp_path):
    hide = tmp_path / "hide"                    # a `torch` that fails to import, first on the path
    (hide / "torch").mkdir(parents=True)
    (hide / "torch" / "__init__.py").write_text("raise ImportError('torch hidden by the test')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(hide), os.environ.get("PYTHONPATH", "")]))
    out, rep = _run_all(tmp_path, "--sections", "train", "infer", "gemm", "stacked", "float64", "memory",
                        "--stacked", "2", env=env)
    assert "torch is not installed" in out, out
    assert rep["one_layer"][0]["err"] < 1e-4 and "torch" not in rep["one_layer"][0]["ms"]["fb"]
    assert rep["stacked"][0]["err"] < 1e-4 and rep["float64"][0]["err"] < 1e-8


def test_bench_versions_imports_the_other_checkout_under_its_own_name(tmp_path, monkeypatch):
    """bench_versions.py copies the other checkout's package under another name, its imports and module paths
    rewritten, so both versions import side by side; a --source without nblstm/ is refused, naming the option."""
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    try:
        import bench_versions
    finally:
        sys.path.remove(os.path.join(REPO, "benchmarks"))
    pkg = tmp_path / "co" / "nblstm"
    (pkg / "kernels").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from nblstm.kernels import cpu\nTARGET = 'nblstm.kernels.cpu'\n")
    (pkg / "kernels" / "__init__.py").write_text("")
    (pkg / "kernels" / "cpu.py").write_text("import nblstm.kernels\nVALUE = 7\n")
    monkeypatch.setattr(bench_versions.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    other = bench_versions.import_other(str(tmp_path / "co"))
    try:
        assert other.__name__.startswith("nblstm_other_") and other.cpu.VALUE == 7
        assert other.TARGET == other.__name__ + ".kernels.cpu" and other.cpu.__name__ == other.TARGET
    finally:
        sys.path.remove(str(tmp_path / "tmp" / "nblstm-bench-versions"))
    proc = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "bench_versions.py"), "--source",
                           str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 2 and "--source: expected a checkout with nblstm/__init__.py" in proc.stderr
