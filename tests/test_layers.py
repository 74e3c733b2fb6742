"""The house's rooms import only downward (DESIGN.md "Shape", issue #23), checked by reading
every import statement of the apps, those inside functions and `if TYPE_CHECKING:` included.

    gateway  ->  analytics  ->  prompts  ->  formats  ->  orgs

A room may import the rooms to its right and nothing to its left; no app imports the project
package (heliconeproj, which routes them all); and no two modules import each other, however
long the circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("orgs", "formats", "prompts", "analytics", "gateway")  # bottom first
PROJECT = "heliconeproj"


def _modules() -> dict[str, Path]:
    found = {}
    for package in (*LAYERS, PROJECT):
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _imported_names(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of everything the module imports, relative imports made absolute."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            names.append((node.lineno, base))
            # `from . import x` and `from pkg import module` name modules too.
            names += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return names


def _project_module(name: str) -> str | None:
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _edges() -> dict[str, dict[str, int]]:
    """module -> {imported project module: line}."""
    edges: dict[str, dict[str, int]] = {}
    for module, path in MODULES.items():
        targets = edges.setdefault(module, {})
        for line, name in _imported_names(module, path):
            target = _project_module(name)
            if target and target != module:
                targets.setdefault(target, line)
    return edges


EDGES = _edges()


def _room(module: str) -> str:
    return module.split(".")[0]


@pytest.mark.parametrize("room", LAYERS)
def test_a_room_imports_only_the_rooms_below_it(room):
    below = set(LAYERS[: LAYERS.index(room)])
    wrong = sorted(
        f"{module} (line {line}) imports {target}"
        for module, targets in EDGES.items() if _room(module) == room
        for target, line in targets.items()
        if _room(target) != room and _room(target) not in below
    )
    assert not wrong, f"{room} may import only {sorted(below) or 'none of the apps'}:\n" + "\n".join(wrong)


def test_no_app_imports_the_project_package():
    wrong = sorted(
        f"{module} (line {line}) imports {target}"
        for module, targets in EDGES.items() if _room(module) != PROJECT
        for target, line in targets.items() if _room(target) == PROJECT
    )
    assert not wrong, "\n".join(wrong)


def _circles() -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []
    for start in EDGES:
        if start in index:
            continue
        work = [(start, iter(EDGES[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(EDGES[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    circles.append(sorted(component))
    return circles


def test_no_modules_import_each_other():
    circles = _circles()
    assert not circles, "modules that import each other:\n" + "\n".join(" <-> ".join(c) for c in circles)


def test_the_checker_sees_imports_inside_functions_and_relative_ones():
    # The rules above are only as good as the reading: a lazy import inside a function and a
    # relative one must both be seen (both hid the wrong-way doors issue #23 found).
    assert "analytics.writer" in EDGES["analytics.logqueue"]  # `from .writer import ...`
    assert "prompts.models" in EDGES["analytics.lifecycle"]  # inside prompts_document()
