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
