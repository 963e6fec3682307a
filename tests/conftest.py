"""Test-suite settings shared by every test file."""

import os

import hypothesis

# CI explores a fixed set of examples so a run is reproducible; local runs keep exploring new ones.
hypothesis.settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis.settings.load_profile("ci")
