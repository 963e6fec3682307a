"""rewardjax: a JAX-native research codebase for reward modeling and alignment."""

import setuptools

INSTALL_REQUIRES = [
    "jax>=0.10",
    "flax>=0.12",
    "optax>=0.2.5",
    "orbax-checkpoint>=0.11",
    "grain>=0.2.12",
    "ml-collections>=1.0",
    "jaxtyping>=0.3",
    "numpy>=1.26",
    "scipy>=1.13",
    "absl-py>=2.1",
    "matplotlib>=3.8",
    "tqdm>=4.66",
    "tokenizers>=0.20",
    "safetensors>=0.4",
    "pyarrow>=15",
    "jinja2>=3.1",
    # TensorBoard event files: its protocol buffers and record writer (imports neither TensorFlow
    # nor PyTorch).
    "tensorboard>=2.16",
]

EXTRAS_REQUIRE = {
    # Reference implementations the tests compare against (PyTorch CPU wheel, HF transformers),
    # notebook execution and the linters the test command runs.
    "test": [
        "pytest>=8",
        "pytest-xdist>=3.5",
        "hypothesis>=6.100",
        "ruff>=0.8",
        "nbclient>=0.10",
        "nbformat>=5.10",
        "ipykernel>=6.29",
        "torch==2.13.0",
        "transformers>=4.50",
        "datasets>=3.0",
        "beartype>=0.18",  # jaxtyping's runtime shape checks over rewardjax in the tests
        "tensorboardX>=2.6",  # an independent reader (CRC, protos) of the TensorBoard event files
    ],
    "tfds": ["tensorflow-datasets>=4.9.7", "array-record>=0.5"],
}
EXTRAS_REQUIRE["all"] = sorted({dep for deps in EXTRAS_REQUIRE.values() for dep in deps})

setuptools.setup(
    name="rewardjax",
    version="0.1.0",
    description="JAX-native reward modeling and alignment: preference losses, best-of-N theory, "
    "reward models, KL-constrained policy optimisation.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=setuptools.find_packages(include=["rewardjax", "rewardjax.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    license="Apache-2.0",
)
