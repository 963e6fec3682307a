"""Test-suite settings shared by every test file."""

import os

import hypothesis
import pytest

# Cheaper LLVM passes for every XLA:CPU compilation of the suite (it is compile-bound: this halves
# its CPU time). Set before any test initialises a JAX backend; results compared with subprocess
# runs then use the same flags on both sides (`env`).
CHEAP_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {CHEAP_XLA_FLAGS}".strip()

# CI explores a fixed set of examples so a run is reproducible; local runs keep exploring new ones.
hypothesis.settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis.settings.load_profile("ci")


@pytest.fixture(scope="session")
def env(tmp_path_factory):
    """The environment of the tests' `python -m rewardjax.main` (and worker) subprocesses.

    One CPU device (inherited XLA_FLAGS dropped), one persistent XLA cache shared by every run
    and pytest-xdist worker (most programs repeat), and cheaper LLVM passes: smoke runs are
    compile-bound, and these flags cut their CPU time by a third to a half. A test that compares
    against an in-process run uses the same flags on both sides.
    """
    cache = tmp_path_factory.getbasetemp().parent / "rewardjax_main_xla_cache"
    cache.mkdir(exist_ok=True)
    return dict(
        {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"},
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=CHEAP_XLA_FLAGS,
        JAX_COMPILATION_CACHE_DIR=str(cache),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
