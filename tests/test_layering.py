"""The architecture's import rules hold at run time: data never loads the model, the model never
loads training or evaluation code; and no module of the package imports itself in a circle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [("mvlt.data", ("mvlt.model", "mvlt.train", "mvlt.eval")), ("mvlt.model", ("mvlt.train", "mvlt.eval"))],
)
def test_import_layering(module: str, forbidden: tuple[str, ...]) -> None:
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.startswith({forbidden!r})))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


def test_top_level_api_is_lazy_but_complete() -> None:
    import mvlt

    assert callable(mvlt.create_model) and "mvlt_tiny" in mvlt.list_models()
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = mvlt.nope


def _package_imports() -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere (top level, in functions, TYPE_CHECKING)."""
    src = Path(__file__).resolve().parents[1] / "src"
    files = {}
    for path in (src / "mvlt").rglob("*.py"):
        parts = path.relative_to(src).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                # ``from pkg import sub`` imports the submodule; any other name comes from ``pkg``
                targets |= {f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names}
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def test_no_import_cycles() -> None:
    graph = _package_imports()
    assert {"mvlt.model.io", "mvlt.data.catalogue", "mvlt.eval.runner"} <= graph.keys()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycle = " -> ".join([*path[path.index(module) :], module])
            raise AssertionError(f"import cycle: {cycle}")
        if module in done:
            return
        for target in sorted(graph[module]):
            visit(target, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
