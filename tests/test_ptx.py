"""PTX check: every CUDA kernel compiles with numba.cuda.compile_ptx for float32 and float64, and the float32 PTX
holds no float64 arithmetic (a Python float literal or math on doubles slips in easily; the simulator runs both).

Runs tests/ptx_check.py in a separate process with NUMBA_ENABLE_CUDASIM=0 (this process runs on the simulator).
Needs numba-cuda with the NVVM and NVRTC wheels (`nvidia-nvvm`, `nvidia-cuda-nvrtc`, installed by .ci/run), no GPU.
Without them the test skips, except on CI (CI set), where it fails.
"""
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def ptx_rows():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    proc = subprocess.run([sys.executable, os.path.join(HERE, "ptx_check.py")], env=env, capture_output=True,
                          text=True, timeout=600)
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    missing = proc.returncode != 0 and not rows or any(
        "numba_cuda" in r["error"] or "libnvvm" in r["error"].lower() or "nvrtc" in r["error"].lower() for r in rows)
    if missing:
        why = (proc.stderr.strip().splitlines() or ["?"])[-1] if not rows else rows[0]["error"][-300:]
        msg = f"PTX check needs numba-cuda, nvidia-nvvm and nvidia-cuda-nvrtc: {why}"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return rows


@pytest.mark.parametrize("module", ["cuda", "layers_cuda", "attention_cuda"])
def test_every_kernel_compiles_to_ptx_for_both_dtypes(ptx_rows, module):
    """Every kernel of nblstm/kernels/cuda.py (LSTM, RNN, GEMM), layers_cuda.py (layers, losses, optimizers) and
    attention_cuda.py (attention)."""
    import importlib
    K = importlib.import_module(f"nblstm.kernels.{module}")

    rows = {(r["kernel"], r["dtype"]): r for r in ptx_rows}
    want = {(k.__name__, dt) for k in K.KERNELS for dt in ("float32", "float64")}
    assert want <= set(rows)
    failed = {key: rows[key]["error"] for key in want if not rows[key]["ok"]}
    assert not failed, failed


def test_float32_ptx_has_no_float64(ptx_rows):
    offenders = {r["kernel"]: r["f64_lines"][:5] for r in ptx_rows
                 if r["dtype"] == "float32" and r["kernel"] != "canary" and r["f64_lines"]}
    assert not offenders, f"float64 instructions in float32 kernels: {offenders}"


def test_the_check_sees_float64(ptx_rows):
    """The detector is not blind: float64 kernels use f64, and a float32 kernel with a Python literal is caught."""
    rows = {(r["kernel"], r["dtype"]): r for r in ptx_rows}
    assert rows[("gemm", "float64")]["f64_lines"]
    assert rows[("canary", "float32")]["ok"] and rows[("canary", "float32")]["f64_lines"]
