"""Executes colabs/01_best_of_n.ipynb top to bottom so it never rots; any cell error fails."""

import pathlib

import nbformat
from nbclient import NotebookClient

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "colabs" / "01_best_of_n.ipynb"


def test_best_of_n_notebook_runs_and_plots():
    book = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in book.cells if cell.cell_type == "code"), (
        "01_best_of_n.ipynb is committed with outputs; clear them"
    )
    # execute() raises CellExecutionError, naming the cell and its traceback, on any error.
    NotebookClient(
        book,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    ).execute()
    images = [
        out
        for cell in book.cells
        for out in cell.get("outputs", [])
        if out.get("output_type") == "display_data" and "image/png" in out.get("data", {})
    ]
    assert len(images) >= 5, f"expected at least 5 plots, got {len(images)}"
