"""Package discovery that pyproject.toml cannot express: the top-level data folders (prompts/,
label_spaces/, csrc/) and the config folders ship inside the wheel as packages of their own, so that
``prolab_cli.paths.data_dir`` finds them from an installed wheel as well as from a checkout.

Each data folder lists what of it ships. Its sub-folders are declared as packages too (setuptools
warns about data folders it would otherwise see as undeclared namespace packages). Anything else a
user writes into a checkout's label_spaces/ (the default output folder) stays out of the wheel.
"""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent

#: package -> (folder, {sub-folder glob: file patterns})
DATA = {
    "prolab_cli._prompts": ("prompts", {".": ["*.yaml"]}),
    "prolab_cli._label_spaces": ("label_spaces", {"classes": ["*.txt"], "descriptions": ["*.json", "*.md"],
                                                  "shipped/*": ["*.json", "*.safetensors"]}),
    "segmentation._csrc": ("csrc", {".": ["*.cpp", "*.cu", "*.h"]}),
}


def data_packages() -> tuple[list[str], dict[str, str], dict[str, list[str]]]:
    """The data packages with their folders and the files each ships."""
    packages, package_dir, package_data = [], {}, {}
    for package, (folder, shipped) in DATA.items():
        package_dir[package] = folder
        for sub_glob, patterns in shipped.items():
            subs = [ROOT / folder] if sub_glob == "." else sorted(p for p in (ROOT / folder).glob(sub_glob) if p.is_dir())
            for sub in subs:
                parts = sub.relative_to(ROOT / folder).parts
                name = ".".join((package, *parts))
                packages.append(name)
                package_data[name] = patterns
                for depth in range(1, len(parts)):  # the folders in between (label_spaces/shipped)
                    packages.append(".".join((package, *parts[:depth])))
        packages.append(package)
    return sorted(set(packages)), package_dir, package_data


PACKAGES, PACKAGE_DIR, PACKAGE_DATA = data_packages()
#: config folders inside the code packages (data, not modules)
CONFIGS = {"segmentation.configs": ["*.yaml"], "segmentation.mmseg_plugin.configs": ["*.py"],
           "segmentation.mmseg_plugin.configs._base_": ["*.py"]}

setup(
    packages=find_packages(include=["prolab_cli*", "segmentation*"]) + PACKAGES + list(CONFIGS),
    package_dir=PACKAGE_DIR,
    package_data={**PACKAGE_DATA, **CONFIGS},
)
