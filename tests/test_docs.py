"""The examples users read must run: README's Python blocks and the docstring examples of public objects."""
import doctest
import pathlib
import re

import pytest

import nblstm

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _python_blocks():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.parametrize("k", range(len(_python_blocks())))
def test_readme_python_blocks_run(k, capsys):
    exec(compile(_python_blocks()[k], f"README.md block {k}", "exec"), {})
    assert capsys.readouterr().out        # the examples print what they show


@pytest.mark.parametrize("obj", [nblstm.LSTM, nblstm.LSTMCell, nblstm.RNN, nblstm.no_grad, nblstm.gradcheck,
                                 nblstm.step_gradients, nblstm.gate_statistics, nblstm.finite_difference_errors],
                         ids=lambda o: o.__name__)
def test_docstring_examples(obj):
    finder = doctest.DocTestFinder(recurse=False)
    tests = finder.find(obj, obj.__name__, globs={})
    assert tests and tests[0].examples, f"{obj.__name__} has no example"
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for t in tests:
        runner.run(t)
    assert runner.failures == 0


# The notebooks are executed by tests/test_notebooks.py (nbclient, a Jupyter kernel; needs the `notebooks` extra).
