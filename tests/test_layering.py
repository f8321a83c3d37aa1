"""The import layering of prolab_cli and segmentation, read from the source with ``ast``.

LAYERS below is the one declaration of the architecture (docs/ARCHITECTURE.md draws it): a module
may import modules of its own layer or of layers listed before it, never one listed after it; no
two modules (or subpackages) may import each other, directly or round a loop; and inside
``segmentation`` only ``segmentation.label_space`` may import the label-space library. Function-level
imports count as much as top-level ones. A failure prints each offending edge.
"""

from __future__ import annotations

import ast
from fnmatch import fnmatchcase
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("prolab_cli", "segmentation")

#: bottom to top; a module belongs to the first layer with a pattern that matches its dotted name
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base utilities", ("prolab_cli", "prolab_cli.errors", "prolab_cli.atomic", "prolab_cli.paths",
                        "prolab_cli.progress", "prolab_cli.extras", "prolab_cli.classes", "prolab_cli.torch_files",
                        "prolab_cli.typed_options", "prolab_cli.description_rules")),
    ("label space: stage plumbing", ("prolab_cli.stage_options", "prolab_cli.cache", "prolab_cli.stage_files", "prolab_cli.templates",
                                     "prolab_cli.descriptor_files", "prolab_cli.multi_hot", "prolab_cli.shipped",
                                     "prolab_cli.llm", "prolab_cli.llm.*")),
    ("label space: describe", ("prolab_cli.describe",)),
    ("label space: embed", ("prolab_cli.embed",)),
    ("label space: cluster", ("prolab_cli.cluster",)),
    ("label space: artifact", ("prolab_cli.artifact",)),
    ("label space: build", ("prolab_cli.build",)),
    ("label space: interop and inspection", ("prolab_cli.interop", "prolab_cli.inspection", "prolab_cli.quality")),
    ("label space: whole-pipeline stages", ("prolab_cli.properties", "prolab_cli.extend", "prolab_cli.naming",
                                              "prolab_cli.pipeline")),
    ("segmentation base", ("segmentation", "segmentation.label_space", "segmentation.labels", "segmentation.zoo", "segmentation.ops",
                           "segmentation.ops.*")),
    ("segmentation models", ("segmentation.models", "segmentation.models.*")),
    ("segmentation data", ("segmentation.data", "segmentation.data.*")),
    ("segmentation engine", ("segmentation.engine", "segmentation.engine.*")),
    ("MMSeg plugin", ("segmentation.mmseg_plugin", "segmentation.mmseg_plugin.*")),
    ("experiments (label spaces and models together)", ("segmentation.experiments", "segmentation.experiments.*")),
    ("commands", ("prolab_cli.commands", "prolab_cli.commands.*", "segmentation.commands",
                  "segmentation.commands.*")),
    ("CLI entry point", ("prolab_cli.cli",)),
]

#: the segmentation stack's one door to label-space artifacts
LABEL_SPACE_DOOR = "segmentation.label_space"


def layer_of(module: str) -> int:
    for index, (_, patterns) in enumerate(LAYERS):
        if any(fnmatchcase(module, p) for p in patterns):
            return index
    raise AssertionError(f"{module}: in no layer; declare it in LAYERS of tests/test_layering.py")


def source_modules(root: Path = ROOT) -> dict[str, Path]:
    """{dotted module name: file} of the two packages (MMSeg config files are data, not modules)."""
    out = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root)
            if "configs" in rel.parts:
                continue
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _targets(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    # "from pkg import name": the submodule pkg.name when there is one, else pkg itself
    return [f"{prefix}.{alias.name}" for alias in node.names] + [prefix]


def import_edges(modules: dict[str, Path]) -> set[tuple[str, str]]:
    """(importer, imported) pairs between the given modules, function-level imports included."""
    edges = set()
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            targets = _targets(node, module, is_package)
            if isinstance(node, ast.ImportFrom):
                prefix = targets.pop()
                targets = [t if t in modules else prefix for t in targets]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != module:
                    edges.add((module, target))
    return edges


def upward_edges(edges: set[tuple[str, str]]) -> list[str]:
    out = []
    for a, b in sorted(edges):
        if layer_of(b) > layer_of(a):
            out.append(f"{a} ({LAYERS[layer_of(a)][0]}) -> {b} ({LAYERS[layer_of(b)][0]})")
    return out


def door_violations(edges: set[tuple[str, str]]) -> list[str]:
    base = layer_of("prolab_cli")
    commands = layer_of("prolab_cli.commands")
    # the layers above the engine drive both halves (experiments, the CLI): the door is for the stack itself
    above_the_stack = layer_of("segmentation.experiments")
    return [f"{a} -> {b}: segmentation reads label spaces through {LABEL_SPACE_DOOR} alone"
            for a, b in sorted(edges)
            if a.startswith("segmentation") and a != LABEL_SPACE_DOOR and b.startswith("prolab_cli")
            and layer_of(a) < above_the_stack and layer_of(b) not in (base, commands)]


def cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    graph: dict[str, list[str]] = {}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def package_of(module: str, modules: dict[str, Path]) -> str:
    """A subpackage (``segmentation.engine``, ``prolab_cli.llm``...) for modules inside one, else the module."""
    parts = module.split(".")
    for n in range(len(parts) - 1, 1, -1):
        candidate = ".".join(parts[:n])
        if modules.get(candidate, Path()).name == "__init__.py":
            return candidate
    return module


def package_edges(edges: set[tuple[str, str]], modules: dict[str, Path]) -> set[tuple[str, str]]:
    out = set()
    for a, b in edges:
        pa, pb = package_of(a, modules), package_of(b, modules)
        if pa != pb and not (pa.startswith(pb + ".") or pb.startswith(pa + ".")):
            out.add((pa, pb))
    return out


def _cycle_lines(found: list[list[str]], edges: set[tuple[str, str]]) -> list[str]:
    return [f"cycle {' <-> '.join(c)}: " + ", ".join(f"{a} -> {b}" for a, b in sorted(edges) if a in c and b in c)
            for c in found]


def test_no_upward_import():
    edges = import_edges(source_modules())
    bad = upward_edges(edges)
    assert not bad, "imports that go up the layers:\n" + "\n".join(bad)


def test_segmentation_reads_label_spaces_through_one_module():
    bad = door_violations(import_edges(source_modules()))
    assert not bad, "\n".join(bad)


def test_no_import_cycle_between_modules_or_packages():
    modules = source_modules()
    edges = import_edges(modules)
    bad = _cycle_lines(cycles(edges), edges)
    packages = package_edges(edges, modules)
    bad += _cycle_lines(cycles(packages), packages)
    assert not bad, "\n".join(bad)


def test_the_checks_catch_what_they_are_for(tmp_path):
    """A planted upward import, a planted cycle and a planted back-door import are each reported."""
    for rel, text in {
        "prolab_cli/__init__.py": "",
        "prolab_cli/errors.py": "",
        "prolab_cli/cluster.py": "def f():\n    from .artifact import LabelSpace\n",
        "prolab_cli/artifact.py": "from . import errors\n",
        "segmentation/__init__.py": "",
        "segmentation/models/__init__.py": "",
        "segmentation/models/segmentor.py": "from segmentation.engine import checkpoint\n",
        "segmentation/engine/__init__.py": "",
        "segmentation/engine/checkpoint.py": "from ..models.segmentor import x\nimport prolab_cli.artifact\n",
    }.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    modules = source_modules(tmp_path)
    edges = import_edges(modules)
    assert ("prolab_cli.artifact", "prolab_cli.errors") in edges
    assert upward_edges(edges) == [
        "prolab_cli.cluster (label space: cluster) -> prolab_cli.artifact (label space: artifact)",
        "segmentation.models.segmentor (segmentation models) -> segmentation.engine.checkpoint (segmentation engine)"]
    assert cycles(edges) == [["segmentation.engine.checkpoint", "segmentation.models.segmentor"]]
    assert cycles(package_edges(edges, modules)) == [["segmentation.engine", "segmentation.models"]]
    assert door_violations(edges) == ["segmentation.engine.checkpoint -> prolab_cli.artifact: segmentation reads "
                                      "label spaces through segmentation.label_space alone"]
