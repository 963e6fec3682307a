"""Executes the theory notebooks (asymptotics, reward transforms) so they never rot."""

import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

COLABS = pathlib.Path(__file__).resolve().parents[1] / "colabs"


@pytest.mark.parametrize("name", ["02_asymptotics.ipynb", "03_reward_transforms.ipynb"])
def test_notebook_runs_and_plots(name):
    book = nbformat.read(COLABS / name, as_version=4)
    assert all(not cell.get("outputs") for cell in book.cells if cell.cell_type == "code"), (
        f"{name} is committed with outputs; clear them"
    )
    # Raises CellExecutionError (with the failing cell and traceback) on any error.
    NotebookClient(
        book, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(COLABS)}}
    ).execute()
    images = [
        out
        for cell in book.cells
        for out in cell.get("outputs", [])
        if out.get("output_type") == "display_data" and "image/png" in out.get("data", {})
    ]
    assert images, f"{name} rendered no plots"
