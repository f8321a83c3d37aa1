"""Package discovery that pyproject.toml cannot express: the top-level data folders
(prompts/, label_spaces/, csrc/) ship inside the wheel as packages of their own, so that
``prolab_cli.paths.data_dir`` finds them from an installed wheel as well as from a checkout."""

from setuptools import find_packages, setup

DATA_PACKAGES = {
    "prolab_cli._prompts": "prompts",
    "prolab_cli._label_spaces": "label_spaces",
    "segmentation._csrc": "csrc",
}

setup(
    packages=find_packages(include=["prolab_cli*", "segmentation*"]) + list(DATA_PACKAGES),
    package_dir=DATA_PACKAGES,
)
