"""Test-suite settings shared by every test file."""

import os

import hypothesis
import jax
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


def _xla_cache(tmp_path_factory) -> str:
    """One persistent XLA cache for the whole run: every pytest-xdist worker and subprocess."""
    cache = tmp_path_factory.getbasetemp().parent / "rewardjax_main_xla_cache"
    cache.mkdir(exist_ok=True)
    return str(cache)


@pytest.fixture(scope="session", autouse=True)
def _in_process_xla_cache(tmp_path_factory):
    """In-process compilations use the persistent cache too: many tests build the same smoke
    programs (the same model, step and shapes in different files), which then compile once per
    run instead of once per test (15 % less CPU on tests/train)."""
    jax.config.update("jax_compilation_cache_dir", _xla_cache(tmp_path_factory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture(scope="session")
def env(tmp_path_factory):
    """The environment of the tests' `python -m rewardjax.main` (and worker) subprocesses.

    One CPU device (inherited XLA_FLAGS dropped), one persistent XLA cache shared by every run
    and pytest-xdist worker (most programs repeat), and cheaper LLVM passes: smoke runs are
    compile-bound, and these flags cut their CPU time by a third to a half. A test that compares
    against an in-process run uses the same flags on both sides.
    """
    return dict(
        {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"},
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=CHEAP_XLA_FLAGS,
        JAX_COMPILATION_CACHE_DIR=_xla_cache(tmp_path_factory),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
