"""The layers point one way: budget and the run store at the bottom, then models, tools and memory, then the
agents' nodes, then workflows, and the CLI and the bench at the top.

Every import is read from the source, including imports inside functions, and so is every module named in
a string (``lazy("thrifty.models.local", ...)``, ``importlib.import_module("...")``), since a layer that
is reached by a late import is reached all the same.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

import thrifty

ROOT = Path(thrifty.__file__).parent
_MODULE_IN_STRING = re.compile(r"^thrifty(?:\.[A-Za-z_][A-Za-z0-9_]*)+$")

# The part of thrifty a module belongs to: its subpackage, or the top-level module's own name.
CLI = {"cli", "console"}
LIBRARY = {
    "budget",
    "store",
    "models",
    "tools",
    "memory",
    "agents",
    "workflows",
    "testing",
    "scale",
    "__init__",
}
FORBIDDEN: dict[str, set[str]] = {
    "redact": {
        "budget",
        "store",
        "models",
        "tools",
        "memory",
        "agents",
        "workflows",
        "testing",
        "scale",
        "bench",
        *CLI,
    },
    "budget": {
        "store",
        "models",
        "tools",
        "memory",
        "agents",
        "workflows",
        "testing",
        "scale",
        "bench",
        *CLI,
    },
    # The run store sits just above the budget: the workflows write runs and the CLI reads them; below the
    # workflows only memory may use it (a memory tier may keep its tables in the same database).
    "store": {"models", "tools", "memory", "agents", "workflows", "testing", "scale", "bench", *CLI},
    "models": {"store", "tools", "memory", "agents", "workflows", "testing", "scale", "bench", *CLI},
    "tools": {"store", "models", "memory", "agents", "workflows", "testing", "scale", "bench", *CLI},
    "memory": {"agents", "workflows", "testing", "scale", "bench", *CLI},
    "agents": {"store", "workflows", "testing", "scale", "bench", *CLI},
    "workflows": {"testing", "scale", "bench", *CLI},
    "testing": {"agents", "workflows", "scale", "bench", *CLI},
    "__init__": {"testing", "scale", "bench", *CLI},
    # Executors and the Ray glue: above the workflows (a batch runs task files), below the bench (a grid
    # runs on them) and the CLI.
    "scale": {"testing", "bench", *CLI},
    "bench": {"cli"},
}


def part_of(module: str) -> str:
    """``thrifty.models.local`` -> ``models``; ``thrifty`` -> ``__init__``; ``thrifty.cli`` -> ``cli``."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve_relative(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
    return ".".join([*base, node.module] if node.module else base)


@cache
def imports_of(path: Path) -> frozenset[str]:
    """Every thrifty module ``path`` imports, anywhere in it, or names in a string."""
    return imports_in(module_name(path), path.read_text(encoding="utf-8"), path.name == "__init__.py")


def imports_in(module: str, text: str, is_package: bool = False) -> frozenset[str]:
    tree = ast.parse(text)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve_relative(module, node, is_package) if node.level else node.module or ""
            found.add(target)
            # `from thrifty.models import local` imports the module thrifty.models.local
            found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value.split(":", 1)[0]  # "pkg.module:function" references
            if _MODULE_IN_STRING.match(text):
                found.add(text)
    return frozenset(m for m in found if m == "thrifty" or m.startswith("thrifty."))


def sources() -> Iterator[Path]:
    yield from sorted(p for p in ROOT.rglob("*.py") if "data" not in p.relative_to(ROOT).parts)


def _known(module: str) -> bool:
    """Whether ``module`` is a real module or package of thrifty (an imported name may be a function)."""
    rel = Path(*module.split(".")[1:]) if "." in module else Path()
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


def violations() -> list[str]:
    bad = []
    for path in sources():
        source = module_name(path)
        banned = FORBIDDEN.get(part_of(source), set())
        for target in sorted(imports_of(path)):
            target_part = part_of(target)
            if target_part in banned and _known(target):
                bad.append(f"{source} imports {target} ({part_of(source)} must not import {target_part})")
    return bad


def test_every_rule_names_a_real_part() -> None:
    parts = {part_of(module_name(p)) for p in sources()}
    for part, banned in FORBIDDEN.items():
        assert part in parts, part
        assert banned <= parts, banned - parts


def test_layers_point_one_way() -> None:
    assert violations() == []


def test_the_library_never_imports_the_cli_or_the_bench() -> None:
    for path in sources():
        source = module_name(path)
        if part_of(source) not in LIBRARY:
            continue
        reached = {part_of(t) for t in imports_of(path) if t != "thrifty" and _known(t)}
        assert not reached & {"bench", *CLI}, f"{source} reaches {reached & {'bench', *CLI}}"


def _package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sources():
        source = part_of(module_name(path))
        for target in imports_of(path):
            if target != "thrifty" and _known(target) and part_of(target) != source:
                graph.setdefault(source, set()).add(part_of(target))
    return graph


def test_no_cycles_between_parts() -> None:
    """Function-level imports used to hide cycles (models <-> agents, workflows.spec <-> strategies)."""
    graph = _package_graph()
    graph.pop("__init__", None)  # the package's public face imports everything below it

    def visit(node: str, stack: list[str], done: set[str]) -> None:
        if node in stack:
            cycle = [*stack[stack.index(node) :], node]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if node in done:
            return
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, [*stack, node], done)
        done.add(node)

    done: set[str] = set()
    for node in sorted(graph):
        visit(node, [], done)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import thrifty.workflows.runner\n", {"thrifty.workflows.runner"}),
        ("def f():\n    from thrifty.bench import sim\n", {"thrifty.bench", "thrifty.bench.sim"}),
        ("X = lazy('thrifty.models.local', 'f')\n", {"thrifty.models.local"}),
        ("REF = 'thrifty.bench.sim:SimProvider'\n", {"thrifty.bench.sim"}),
        ("TEXT = 'thrifty is great'\n", set()),
    ],
)
def test_the_reader_sees_late_and_string_imports(source: str, expected: set[str]) -> None:
    assert imports_in("thrifty.agents.probe", source) == expected


def test_the_reader_resolves_relative_imports() -> None:
    assert imports_in("thrifty.agents.probe", "from .solver import x\n") >= {"thrifty.agents.solver"}
    assert imports_in("thrifty.agents", "from ..bench import sim\n", is_package=True) >= {"thrifty.bench.sim"}
