"""House rules of the library: light imports, no import cycle, small modules, back-pointers to notebooks."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "tcmax_lib"
MODULES = sorted(p for p in PKG.rglob("*.py"))
BACK_POINTER = re.compile(r"\b(notebooks?|nb) \d\d\b", re.IGNORECASE)


def _name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """tcmax_lib modules imported anywhere in a file (module level and inside functions)."""
    tree = ast.parse(path.read_text())
    here = _name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            if not mod.startswith("tcmax_lib"):
                continue
            for alias in node.names:  # `from . import plotting` imports a submodule
                sub = f"{mod}.{alias.name}"
                found.add(sub if (ROOT / Path(*sub.split("."))).with_suffix(".py").exists() else mod)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("tcmax_lib")}
    return found - {_name(path)}


def test_losses_import_is_light():
    code = ("import sys, tcmax_lib.losses, tcmax_lib.models, tcmax_lib.methods\n"
            "heavy = [m for m in ('matplotlib', 'seaborn', 'pandas') if m in sys.modules]\n"
            "assert not heavy, heavy")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr


def test_no_import_cycle():
    graph = {_name(p): _imports(p) for p in MODULES if p.name != "__main__.py"}
    graph = {k: {d for d in v if d in graph and d != "tcmax_lib"} for k, v in graph.items()}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(dep):] + [dep]))
            if dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for mod in sorted(graph):
        if mod not in state:
            visit(mod, [mod])


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_module_is_small(path):
    assert len(path.read_text().splitlines()) <= 300, f"{path.name} is over 300 lines: split it"


def test_every_public_helper_points_to_its_notebook():
    missing = []
    for path in MODULES:
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                doc = ast.get_docstring(node) or ""
                if not doc:
                    missing.append(f"{_name(path)}.{node.name}: no docstring")
                elif not BACK_POINTER.search(doc) and not (path.name == "cli.py"):
                    missing.append(f"{_name(path)}.{node.name}: docstring names no notebook")
    assert not missing, "\n".join(missing)


def test_console_script_and_module_entry_point():
    res = subprocess.run([sys.executable, "-m", "tcmax_lib", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0 and "series" in res.stdout and "cremad" in res.stdout, res.stderr


def test_nothing_outside_course_imports_course():
    """The machinery that runs and publishes the series (tcmax_lib/course) sits apart from what the course
    teaches: no module outside it imports it (the `python -m tcmax_lib` entry point aside)."""
    offenders = []
    for path in MODULES:
        rel = path.relative_to(PKG)
        if rel.parts[0] == "course" or rel.name == "__main__.py":
            continue
        offenders += [f"{_name(path)} imports {m}" for m in _imports(path) if m.startswith("tcmax_lib.course")]
    assert not offenders, "\n".join(offenders)


def test_every_method_has_its_own_file_with_its_sources():
    """One file per training method; each opens with its idea, paper or official code, and its notebook."""
    from tcmax_lib.methods import METHODS

    for name, cls in METHODS.items():
        path = PKG / "methods" / f"{name}.py"
        assert path.exists() and cls.__module__ == f"tcmax_lib.methods.{name}", name
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        assert "Idea:" in doc and "Official code followed:" in doc and BACK_POINTER.search(doc), name
    init = ast.parse((PKG / "methods" / "__init__.py").read_text())
    defined = [n.name for n in init.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    assert defined == ["make_method"], defined                     # the registry and make_method, nothing else


def test_api_reference_lists_every_module():
    api = (ROOT / "docs" / "api.md").read_text()
    listed = set(re.findall(r"automodule:: (tcmax_lib[\w.]*)", api))
    modules = {_name(p) for p in MODULES if p.name != "__main__.py"} - {"tcmax_lib", "tcmax_lib.data"}
    assert modules == listed, (modules - listed, listed - modules)
