"""The import graph of the `cfgen` package: no cycles, the library never imports the commands,
and importing cfgen changes nothing process-wide.

The graph is read statically (ast) from every `import` in the source, function-level ones
included: an import deferred into a function still ties two modules together.
"""

import ast
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import cfgen

PACKAGE = Path(cfgen.__file__).parent

# The command layer parses and dispatches: `cfgen/cli.py`, each part's `cli.py`, the command
# table and the pipeline that runs commands as stages (with its closing summary).
COMMAND_LAYER = {"cfgen.cli", "cfgen.commands", "cfgen.pipeline", "cfgen.stages", "cfgen.summary"}

# Cycles still in the code, each with who removes it. The list only shrinks: a cycle that is
# gone must be taken out of it, and any cycle not listed fails.
KNOWN_CYCLES: set[frozenset[str]] = set()
KNOWN_UPWARD: set[tuple[str, str]] = set()


def module_names() -> dict[str, Path]:
    """Dotted name -> source file, for every module of the package."""
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """Dotted names an import statement reads (`from a import b` gives `a.b`, then `a`)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        parent = module.split(".")[: len(module.split(".")) - node.level + is_package]
        base = ".".join([*parent, base] if base else parent)
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


@functools.cache
def import_graph() -> dict[str, set[str]]:
    """cfgen module -> the cfgen modules it imports (anywhere in its source)."""
    modules = module_names()

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = _imported(node, module, path.name == "__init__.py")
            # `from a import b`: module `a.b` if it exists, else the name b inside `a`.
            found = [owner(name) for name in names if name.split(".")[0] == "cfgen"]
            if found and found[0]:
                targets.add(found[0])
            targets.update(name for name in found[1:] if name)
        targets.discard(module)
        graph[module] = {t for t in targets if t != "cfgen" or module == "cfgen"}
    return graph


def cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), set()

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while not component or node not in component:
                component.add(stack.pop())
            on_stack.difference_update(component)
            if len(component) > 1:
                found.add(frozenset(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def part(module: str) -> str:
    """The part a module belongs to: its subpackage (`cfgen.train`) or itself (`cfgen.io`)."""
    parts = module.split(".")
    is_subpackage = len(parts) > 2 or (PACKAGE / parts[-1]).is_dir()
    return ".".join(parts[:2]) if is_subpackage else module


def is_command_layer(module: str) -> bool:
    return module in COMMAND_LAYER or module.endswith(".cli")


def test_graph_reader_sees_every_kind_of_import():
    graph = import_graph()
    assert "cfgen.errors" in graph["cfgen.cli"]  # from cfgen.errors import CfgenError
    assert "cfgen.commands" in graph["cfgen.stages"]
    assert "cfgen.figures" in graph["cfgen.evaluate.report"]  # from cfgen import figures
    assert "cfgen.evaluate.realism" in graph["cfgen.evaluate.build"]  # inside a function
    assert {"cfgen.a", "cfgen.b"} in cycles({"cfgen.a": {"cfgen.b"}, "cfgen.b": {"cfgen.a"}})


def test_no_import_cycles_between_modules():
    found = cycles(import_graph())
    new = [sorted(cycle) for cycle in found - KNOWN_CYCLES]
    gone = [sorted(cycle) for cycle in KNOWN_CYCLES - found]
    assert not new, f"import cycles: {new}"
    assert not gone, f"these cycles are gone: remove them from KNOWN_CYCLES: {gone}"


def test_no_import_cycles_between_parts():
    graph = import_graph()
    parts: dict[str, set[str]] = {}
    for module, targets in graph.items():
        if is_command_layer(module) or module == "cfgen":
            continue
        parts.setdefault(part(module), set()).update(
            part(t) for t in targets if not is_command_layer(t)
        )
    tangled = [sorted(cycle) for cycle in cycles({k: v - {k} for k, v in parts.items()})]
    assert not tangled, f"parts of the library import each other: {tangled}"


def test_library_never_imports_the_command_layer():
    upward = {
        (module, target)
        for module, targets in import_graph().items()
        if not is_command_layer(module)
        for target in targets
        if is_command_layer(target)
    }
    assert not upward - KNOWN_UPWARD, f"library modules import commands: {upward - KNOWN_UPWARD}"
    assert not KNOWN_UPWARD - upward, f"gone: remove from KNOWN_UPWARD: {KNOWN_UPWARD - upward}"


IMPORT_EVERYTHING = """
import importlib, json, sys, warnings
import torch
modules, third_party = json.loads(sys.argv[1])
for name in third_party:  # their own import-time effects are not cfgen's
    try:
        importlib.import_module(name)
    except ImportError:
        pass
torch.set_num_threads(3)
filters = list(warnings.filters)
for name in modules:
    importlib.import_module(name)
import matplotlib
print(json.dumps({
    "threads": torch.get_num_threads(),
    "backend": matplotlib.get_backend(),
    "new_filters": [str(f) for f in warnings.filters if f not in filters],
    "filters_removed": [str(f) for f in filters if f not in warnings.filters],
}))
"""


def third_party_imports() -> list[str]:
    names = set()
    for path in module_names().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.add(node.module)
    return sorted(name for name in names if name.split(".")[0] != "cfgen")


def test_importing_cfgen_changes_nothing_process_wide():
    modules = sorted(module_names())
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERYTHING, json.dumps([modules, third_party_imports()])],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "MPLBACKEND": "svg"},
    )
    effects = json.loads(result.stdout.strip().splitlines()[-1])
    assert effects == {"threads": 3, "backend": "svg", "new_filters": [], "filters_removed": []}
