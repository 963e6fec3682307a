"""Executes every notebook in colabs/ top to bottom so none rots; any cell error fails. Each opens
in Colab: its first code cell installs rewardjax when it is not importable."""

import ast
import builtins
import pathlib
from unittest import mock

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager
from nbclient import NotebookClient

COLABS = pathlib.Path(__file__).resolve().parents[1] / "colabs"
NOTEBOOKS = sorted(COLABS.glob("*.ipynb"))
# Fewest plots each notebook must render (its figures are the point of running it).
MIN_PLOTS = {"01_best_of_n.ipynb": 5}


def test_every_notebook_is_collected():
    assert len(NOTEBOOKS) >= 3, f"expected the three theory notebooks in {COLABS}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_and_plots(path):
    book = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in book.cells if cell.cell_type == "code"), (
        f"{path.name} is committed with outputs; clear them"
    )
    # Raises CellExecutionError, naming the failing cell and its traceback, on any error.
    NotebookClient(
        book, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(COLABS)}}
    ).execute()
    images = [
        out
        for cell in book.cells
        for out in cell.get("outputs", [])
        if out.get("output_type") == "display_data" and "image/png" in out.get("data", {})
    ]
    assert len(images) >= MIN_PLOTS.get(path.name, 1), f"{path.name} rendered {len(images)} plots"


def _install_guard(path):
    """The first code cell of `path` as the Python IPython runs (`%pip` becomes a call)."""
    book = nbformat.read(path, as_version=4)
    cell = next(c for c in book.cells if c.cell_type == "code")
    return TransformerManager().transform_cell(cell.source)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_code_cell_installs_rewardjax_only_when_missing(path):
    """`try: import rewardjax / except ImportError: %pip install -q rewardjax` and nothing else
    that runs: where rewardjax imports (as here) the cell does nothing; where it does not (a fresh
    Colab runtime) it runs `pip install` once."""
    code = _install_guard(path)
    body = ast.parse(code).body
    assert len(body) == 1 and isinstance(body[0], ast.Try), (
        f"{path.name}: the first code cell is not the install guard"
    )
    guard = body[0]
    assert [ast.unparse(s) for s in guard.body] == ["import rewardjax"]
    (handler,) = guard.handlers
    assert ast.unparse(handler.type) == "ImportError"

    shell = mock.Mock()
    exec(code, {"get_ipython": lambda: shell})  # rewardjax is importable: nothing to install
    shell.run_line_magic.assert_not_called()

    real_import = builtins.__import__

    def missing(name, *args, **kwargs):
        if name == "rewardjax":
            raise ImportError("No module named 'rewardjax'")
        return real_import(name, *args, **kwargs)

    with mock.patch("builtins.__import__", missing):
        exec(code, {"get_ipython": lambda: shell})
    shell.run_line_magic.assert_called_once_with("pip", "install -q rewardjax")
