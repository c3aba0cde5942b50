"""No import loops in the backend, counting imports placed inside functions: each module's imports of the
package's other modules, read with ``ast``, form a graph without cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import stereoforge

PACKAGE = Path(stereoforge.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports anywhere in it (a package's ``__init__`` counts as the
    package; ``from . import x`` counts ``x`` when it is a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports(path, set(paths)) for name, path in paths.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of modules (depth-first search)."""
    found, done = [], set()

    def visit(node: str, trail: list[str]) -> None:
        if node in trail:
            found.append(trail[trail.index(node):] + [node])
            return
        if node in done:
            return
        for target in sorted(edges.get(node, ())):
            visit(target, trail + [node])
        done.add(node)

    for node in sorted(edges):
        visit(node, [])
    return found


def test_the_import_graph_counts_every_kind_of_import():
    edges = graph()
    assert "stereoforge.pipeline" in edges["stereoforge.server"]  # inside a function (run_job)
    assert "stereoforge.models.loading" in edges["stereoforge.models.depth"]  # relative, at the top
    assert "stereoforge.cli.generate" in edges["stereoforge.cli"]  # from . import generate
    assert "stereoforge.generate" in edges["stereoforge.cli.generate"]  # from ..generate import ...
    assert "stereoforge.shot" in edges["stereoforge.models.inpaint"]  # from .. inside a function


def test_a_loop_is_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_the_backend_has_no_import_loop():
    found = cycles(graph())
    assert found == [], "import loops: " + "; ".join(" -> ".join(loop) for loop in found)


def outside_imports(path: Path) -> set[str]:
    """The top-level names of what ``path`` imports from outside the package (``argparse``, ``torch``...)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found.add((node.module or "").split(".")[0])
    return found


def test_the_library_knows_nothing_of_the_command_line():
    """The command line (stereoforge.cli) and the developer tools (stereoforge.dev) sit on top: nothing else in
    the package imports them, nor argparse."""
    on_top = ("stereoforge.cli", "stereoforge.dev")
    library = {name: path for name, path in ((module_name(p), p) for p in PACKAGE.rglob("*.py"))
               if not name.startswith(on_top)}
    edges = graph()
    assert "stereoforge.pipeline" in library and "stereoforge.stages.ingest" in library
    reaching_up = {name: sorted(t for t in edges[name] if t.startswith(on_top)) for name in library}
    assert {name: up for name, up in reaching_up.items() if up} == {}
    assert sorted(name for name, path in library.items() if "argparse" in outside_imports(path)) == []
