"""Every CPU kernel stays inside its arrays: the kernel tests again in a fresh process with NUMBA_BOUNDSCHECK=1 (numba
compiles index checks in: an out-of-bounds access raises IndexError instead of corrupting memory) and an empty numba
cache (cached code has no checks). numba does not check indices by default, and a write past an array's end showed
up only as intermittent heap-corruption aborts (a projection's pointwise h, an SGD step's empty momentum buffer)."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FILES = ["test_kernels.py", "test_layers_cuda.py", "test_attention.py", "test_rnn.py", "test_stacked.py"]


def test_cpu_kernels_in_bounds(tmp_path):
    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache"),
           "HYPOTHESIS_PROFILE": "default"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "not cuda",
                           *[os.path.join(HERE, f) for f in FILES]], env=env, capture_output=True, text=True,
                          timeout=900, cwd=os.path.dirname(HERE))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "IndexError" not in proc.stdout
