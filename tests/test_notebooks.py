"""Every notebook in notebooks/ runs top to bottom in a Jupyter kernel (nbclient) and is committed without outputs.

Needs the `notebooks` extra (matplotlib, nbclient, ipykernel): ``pip install -e ".[notebooks]"``; without it the
execution tests skip. The notebooks run with NBLSTM_NOTEBOOK_QUICK=1, which each long notebook reads to shrink its
budget (shorter sequences, fewer steps): the code path is the same as a user's full run, only smaller.
"""
import importlib.util
import json
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MISSING = [m for m in ("nbclient", "nbformat", "ipykernel", "matplotlib") if importlib.util.find_spec(m) is None]


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 5, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    """Outputs would go stale as the code changes: the committed notebooks carry none."""
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, "no code cells"
    stale = [k for k, c in enumerate(code) if c.get("outputs") or c.get("execution_count") is not None]
    assert not stale, f"{path.name}: code cells {stale} have outputs; clear them before committing"


@pytest.mark.skipif(bool(MISSING), reason=f"notebook execution needs the `notebooks` extra "
                                          f"(pip install -e \".[notebooks]\"); missing: {', '.join(MISSING)}")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path, monkeypatch):
    import nbclient
    import nbformat

    monkeypatch.setenv("MPLBACKEND", "Agg")               # no display needed (the figures are drawn below)
    monkeypatch.setenv("NBLSTM_NOTEBOOK_QUICK", "1")      # each notebook's small budget
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    nb = nbformat.read(path, as_version=4)
    plots = "matplotlib" in "".join(c.source for c in nb.cells if c.cell_type == "code")
    if plots:
        # Agg shows nothing but keeps every figure open: draw them all (a plotting error surfaces here), count them
        nb.cells.append(nbformat.v4.new_code_cell(
            "import matplotlib.pyplot as _plt\n"
            "for _n in _plt.get_fignums():\n    _plt.figure(_n).canvas.draw()\n"
            "print(f'figures drawn: {len(_plt.get_fignums())}')"))
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=300,
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()                                      # raises CellExecutionError naming the cell that failed
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream" and o.name == "stdout")
    assert text.strip(), f"{path.name} printed nothing"
    if plots:
        drawn = int(text.rsplit("figures drawn: ", 1)[1].split()[0])
        assert drawn > 0, f"{path.name} uses matplotlib but made no figure"
