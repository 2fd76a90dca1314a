"""The code layout the maintainers rely on (docs/architecture.md): private state of Lightning, jsonargparse and
torch is touched in genlab/runtime.py only, no function is longer than a screen, and `models/base.py` holds the
sampling interface alone."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "genlab"
SOURCES = sorted(PACKAGE.rglob("*.py"))


def genlab_private_names() -> set[str]:
    """Every `_name` genlab itself defines: functions, classes, attributes it assigns, keyword arguments."""
    names = set()
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
    return {name for name in names if name.startswith("_")}


DOCUMENTED = {"_exit"}  # os._exit: public, documented, despite its name


def test_private_members_of_other_libraries_are_used_in_runtime_only():
    own = genlab_private_names() | DOCUMENTED
    found = []
    for path in SOURCES:
        if path.name == "runtime.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and node.attr not in own):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} .{node.attr}")
    assert not found, f"private members used outside genlab/runtime.py: {found}"


def test_no_function_is_longer_than_forty_lines():
    long = [f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})"
            for path in SOURCES for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 40]
    assert not long, f"functions over 40 lines: {long}"


def test_models_base_is_the_sampling_interface_only():
    source = (PACKAGE / "models" / "base.py").read_text()
    assert len(source.splitlines()) <= 125
    assert "checkpoint" not in source.lower() and "divergence" not in source.lower()  # training lives elsewhere


def test_no_test_module_imports_another_shared_helpers_live_in_tests_helpers():
    """A test importing another test module runs (or breaks with) that module's tests' setup; shared constants
    and functions have one home, tests/helpers.py (fixtures: conftest.py)."""
    offenders = []
    for path in sorted((Path(__file__).parent).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tests."):
                if node.module.split(".")[1].startswith(("test_", "conftest")):
                    offenders.append(f"{path.name}:{node.lineno} imports {node.module}")
            elif isinstance(node, ast.Import):
                offenders += [f"{path.name}:{node.lineno} imports {alias.name}" for alias in node.names
                              if alias.name.startswith(("tests.test_", "tests.conftest"))]
    assert not offenders, offenders


def test_ruff_finds_nothing_with_the_projects_settings():
    """The linter pinned in the test extra, with pyproject.toml's settings, over the whole repository."""
    import subprocess
    import sys

    repository = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "ruff", "check", str(repository), "--output-format", "concise"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]


def genlab_imports() -> dict[str, set[str]]:
    """Each genlab module → the genlab modules it imports anywhere (top level, in functions, under TYPE_CHECKING);
    a package's own modules importing the package do not count."""
    modules = {".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): path
               for path in SOURCES}

    def resolve(name: str) -> str | None:
        parts = name.split(".")
        return next((".".join(parts[:k]) for k in range(len(parts), 0, -1) if ".".join(parts[:k]) in modules), None)

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("genlab"):
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names if alias.name.startswith("genlab")]
            else:
                continue
            for target in targets:
                found = resolve(target)
                if found and found != name and not name.startswith(f"{found}."):
                    graph[name].add(found)
    return graph


def test_there_are_no_import_cycles_not_even_inside_functions_or_under_type_checking():
    graph = genlab_imports()
    cycles = []

    def walk(start: str, node: str, path: list[str]) -> None:
        for following in sorted(graph[node]):
            if following == start:
                cycles.append(" → ".join([*path, start]))
            elif following not in path and following > start:  # each cycle once, from its smallest module
                walk(start, following, [*path, following])

    for module in sorted(graph):
        walk(module, module, [module])
    assert not cycles, cycles
