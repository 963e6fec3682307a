"""Executes every notebook in colabs/ top to bottom so none rots; any cell error fails."""

import pathlib

import nbformat
import pytest
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
