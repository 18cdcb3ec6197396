"""The package's shape, read from its imports: every module imports only from its own layer or
the layers below, packages of one layer never import each other, and there are no circles.
docs/architecture.md explains the layers."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Lowest first. A module may import from its own package and from lower layers.
LAYERS: list[tuple[str, ...]] = [
    ("metarl", "metarl.envs"),  # the package root (its version) and the environments
    ("metarl.core",),  # the maths: pure functions of tensors
    ("metarl.run",),  # the run machinery every kind of run shares
    ("metarl.config",),  # the RL config
    ("metarl.rl", "metarl.fewshot"),  # RL meta-learning; supervised few-shot learning
    ("metarl.autometa",),  # the architecture search, on few-shot learning
    ("metarl.cli",),  # the command line
    ("metarl.__main__",),  # python -m metarl
]


def module_name(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = list(relative.parts)
    if parts[0] == "envs":  # envs/ installs as metarl.envs
        parts = ["metarl", *parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the metarl modules it imports (at any depth of its code, TYPE_CHECKING too)."""
    files = {module_name(p): p for p in [*ROOT.joinpath("metarl").rglob("*.py"),
                                          *ROOT.joinpath("envs").rglob("*.py")]}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    imported.add(full if full in files else node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
        graph[name] = {m for m in imported if m.split(".")[0] == "metarl" and m != name}
    return graph


def layer_of(module: str) -> tuple[int, str]:
    """The layer index and the layer package that holds ``module`` (the longest match)."""
    best: tuple[int, str] | None = None
    for index, packages in enumerate(LAYERS):
        for package in packages:
            inside = module == package or module.startswith(package + ".")
            if inside and (best is None or len(package) > len(best[1])):
                best = (index, package)
    assert best is not None, f"{module} belongs to no layer; add it to LAYERS"
    return best


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for module, imported in graph.items():
        layer, package = layer_of(module)
        for target in imported:
            target_layer, target_package = layer_of(target)
            if target_layer > layer or (target_layer == layer and target_package != package):
                wrong.append(f"{module} -> {target}")
    return sorted(wrong)


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle found by a depth-first search (one path per back edge)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                found.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return found


def test_every_module_imports_only_downward() -> None:
    assert layer_violations(import_graph()) == []


def test_there_are_no_import_circles() -> None:
    assert circles(import_graph()) == []


def test_the_checks_catch_an_upward_import_and_a_circle() -> None:
    graph = import_graph()
    graph["metarl.core.linalg"] = graph["metarl.core.linalg"] | {"metarl.rl.trainer"}
    assert layer_violations(graph) == ["metarl.core.linalg -> metarl.rl.trainer"]
    assert circles(graph)  # rl.trainer imports core.linalg, which would import it back
    peers = import_graph()
    peers["metarl.rl.compare"] = peers["metarl.rl.compare"] | {"metarl.fewshot.config"}
    assert layer_violations(peers) == ["metarl.rl.compare -> metarl.fewshot.config"]


def test_every_learner_and_outer_step_has_its_own_module() -> None:
    from metarl.rl.learners import LEARNERS
    from metarl.rl.outer_steps import OUTER_STEPS

    for registry in (LEARNERS, OUTER_STEPS):
        for name, cls in registry.items():
            assert cls.name == name
            assert cls.__module__.rsplit(".", 1)[-1] not in ("base", "__init__"), name
