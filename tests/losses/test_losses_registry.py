"""The public API of rewardjax.losses: exports, docstrings, signatures and the name registry."""

import inspect

import jax
import numpy as np
import pytest

import rewardjax
from rewardjax import losses

HELPERS = {"get", "names", "spec", "LossSpec"}
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
    with pytest.raises(ValueError, match="dpo"):
        losses.get("dpoo")
    with pytest.raises(ValueError, match="dpo"):
        losses.spec("dpoo")


def test_spec_metadata_matches_the_signatures():
    """The layout and inputs a spec declares agree with what the function takes."""
    for name in losses.names():
        s = losses.spec(name)
        params = inspect.signature(s.fn).parameters
        if s.inputs == "logprobs":
            assert s.implicit_reward is not None, name
            assert s.reference == any("ref" in p for p in params), name
        else:
            assert s.inputs == "scores" and s.implicit_reward is None and not s.reference, name
        if s.layout == "ranked":
            assert "scores" in params or "log_probs" in params, name


def test_implicit_rewards_against_numpy():
    pi, ref, n = np.array([-3.0, -8.0]), np.array([-4.0, -6.0]), np.array([2.0, 4.0])
    dpo = losses.spec("dpo").implicit_reward(pi, ref, n, beta=0.5)
    np.testing.assert_allclose(dpo, 0.5 * (pi - ref), rtol=1e-6)
    simpo = losses.spec("simpo").implicit_reward(pi, None, n, beta=2.0)
    np.testing.assert_allclose(simpo, 2.0 * pi / n, rtol=1e-6)
    p = np.exp(pi / n)
    orpo = losses.spec("orpo").implicit_reward(pi, None, n, beta=1.0)
    np.testing.assert_allclose(orpo, np.log(p / (1 - p)), rtol=1e-5)


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


# Per-example losses on [*B] inputs; the step-level (process) losses take [*B, S] rows and are
# resolved by the test below, their values checked in test_losses_process.py.
PER_EXAMPLE = [n for n in losses.names() if losses.spec(n).layout != "steps"]


def test_step_losses_resolve_to_the_process_module():
    steps = [n for n in losses.names() if losses.spec(n).layout == "steps"]
    assert sorted(steps) == [
        "implicit_prm_outcome_loss",
        "step_bradley_terry",
        "step_cross_entropy",
    ]
    for name in steps:
        assert losses.get(name) is getattr(losses.process, name)


@pytest.mark.parametrize("name", PER_EXAMPLE)
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
