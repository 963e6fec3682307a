"""The public API of rewardjax.losses: exports, docstrings, signatures and the name registry."""

import inspect

import jax
import numpy as np
import pytest

import rewardjax
from rewardjax import losses

HELPERS = {"get", "names"}
FUNCTIONS = sorted(set(losses.__all__) - HELPERS)


def test_all_names_are_exported():
    from rewardjax.losses import __all__ as exported

    assert "losses" in rewardjax.__all__
    for name in exported:
        assert callable(getattr(losses, name)), name
    assert set(losses.names()) <= set(exported)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_docstring_has_summary_formula_args_returns_and_reference(name):
    doc = inspect.getdoc(getattr(losses, name))
    assert doc and doc.splitlines()[0].endswith("."), name
    for section in ("Args:", "Returns:", "References:"):
        assert section in doc, (name, section)
    assert "=" in doc, f"{name}: no formula"
    assert "arXiv" in doc, f"{name}: no arXiv id (or 'no arXiv id')"


@pytest.mark.parametrize("name", FUNCTIONS)
def test_hyperparameters_are_keyword_only(name):
    params = inspect.signature(getattr(losses, name)).parameters.values()
    for p in params:
        # `where` may be positional for sequence_logprobs (its documented third argument).
        if p.default is not inspect.Parameter.empty and p.name != "where":
            assert p.kind is inspect.Parameter.KEYWORD_ONLY, (name, p.name)


def test_get_unknown_name_lists_known_names():
    with pytest.raises(KeyError, match="dpo"):
        losses.get("dpoo")


# Positional arguments by name: integer/boolean ones, the rest are float scores or log-probs.
_INTEGER_ARGS = {
    "rating": lambda shape: np.full(shape, 1),
    "best_index": lambda shape: np.zeros(shape, int),
}
_BOOL_ARGS = {"desirable": lambda shape: np.arange(np.prod(shape)).reshape(shape) % 2 == 0}
_REQUIRED_KEYWORDS = {
    "cutpoints": np.array([-1.0, 0.0, 1.0]),
    "bin_values": np.array([1.0, 2.0, 3.0, 4.0]),
}
_LISTWISE = {"scores", "log_probs"}  # these carry a trailing K axis (4)


@pytest.mark.parametrize("name", losses.names())
def test_registry_resolves_every_name_with_its_documented_signature(name):
    fn = losses.get(name)
    assert fn is getattr(losses, name)
    batch = (2, 3)
    rng = np.random.default_rng(0)
    args, kwargs = [], {}
    for p in inspect.signature(fn).parameters.values():
        if (
            p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
            and p.default is inspect.Parameter.empty
        ):
            if p.name in _INTEGER_ARGS:
                args.append(_INTEGER_ARGS[p.name](batch))
            elif p.name in _BOOL_ARGS:
                args.append(_BOOL_ARGS[p.name](batch))
            elif p.name in _LISTWISE:
                args.append(rng.normal(size=(*batch, 4)))
            elif p.name.endswith("lengths"):
                args.append(np.full(batch, 5.0))
            else:
                args.append(-np.abs(rng.normal(size=batch)))
        elif p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty:
            kwargs[p.name] = _REQUIRED_KEYWORDS[p.name]
    out = jax.jit(lambda *a: fn(*a, **kwargs))(*args)
    assert out.shape == batch, name
    assert np.all(np.isfinite(out)), name
