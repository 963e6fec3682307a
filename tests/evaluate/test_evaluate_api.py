"""The public names of rewardjax.evaluate."""

import importlib

from rewardjax import evaluate


def test_public_names_exist_and_cover_the_modules():
    for name in evaluate.__all__:
        assert hasattr(evaluate, name), name
    for module in ("gold", "pairs", "process", "report", "run_report", "runner"):
        mod = importlib.import_module(f"rewardjax.evaluate.{module}")
        assert set(mod.__all__) <= set(evaluate.__all__), module
    assert len(set(evaluate.__all__)) == len(evaluate.__all__)
