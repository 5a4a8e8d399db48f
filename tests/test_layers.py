"""The library's layers, read from its import statements: one import direction, no private reach-ins.

The layers are the ones the package docstring lists: util < core < course < teaching. A module
may import from its own layer or a lower one, never from a higher one; ``measure`` is a leaf.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import lessons_lib

PACKAGE = Path(lessons_lib.__file__).parent
LAYERS = {
    "util": ["validate", "repro", "progress", "checkpoint"],
    "core": ["sparsity", "pruning", "slimming", "reconstruction", "measure"],
    "course": ["data", "models", "training", "schedules", "experiments", "structured", "gpt", "tasks",
               "gpt_structured", "cnn"],
    "teaching": ["plots", "widgets", "checks", "assignment"],
}
RANK = {module: rank for rank, modules in enumerate(LAYERS.values()) for module in modules}


def _imports(module: str) -> list[tuple[str, list[str], int]]:
    """Every ``lessons_lib`` import of ``module`` (at any depth, lazy ones included):
    (imported module, names imported from it, line)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                target = node.module
            elif node.module and node.module.startswith("lessons_lib."):
                target = node.module.removeprefix("lessons_lib.")
            else:
                continue
            if target is None:                                 # from . import x
                for alias in node.names:
                    found.append((alias.name, [], node.lineno))
            else:
                found.append((target.split(".")[0], [alias.name for alias in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("lessons_lib."):
                    found.append((alias.name.split(".")[1], [], node.lineno))
    return found


def test_every_module_has_a_layer():
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules == set(RANK), "a new module needs a layer here and in the package docstring"
    for module in RANK:
        assert f"``{module}``" in lessons_lib.__doc__, f"the package docstring does not place {module}"


@pytest.mark.parametrize("module", sorted(RANK))
def test_imports_go_down_the_layers_only(module):
    for target, _, line in _imports(module):
        assert target in RANK, f"{module}.py:{line} imports lessons_lib.{target}, which has no layer"
        assert RANK[target] <= RANK[module], (
            f"{module}.py:{line} imports {target} ({list(LAYERS)[RANK[target]]}) from the "
            f"{list(LAYERS)[RANK[module]]} layer: imports must go down the layers")


def test_measure_is_a_leaf_and_core_depends_on_torch_only():
    assert {target for target, _, _ in _imports("measure")} <= {"validate"}
    for module in LAYERS["core"]:
        tree = ast.parse((PACKAGE / f"{module}.py").read_text())
        third_party = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                       for alias in node.names}
        third_party |= {node.module.split(".")[0] for node in ast.walk(tree)
                        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module}
        assert third_party - set(sys.stdlib_module_names) <= {"torch"}, (module, third_party)


@pytest.mark.parametrize("module", sorted(RANK))
def test_no_module_imports_another_modules_private_names(module):
    for target, names, line in _imports(module):
        private = [name for name in names if name.startswith("_")]
        assert not private, f"{module}.py:{line} imports {private} from {target}: make it public or move it"


def test_importing_checks_loads_no_gpt_and_no_scikit_learn():
    """Lesson 00 imports checks for its first exercise: that must stay light."""
    code = ("import sys, lessons_lib.checks; "
            "print(sorted(m for m in sys.modules if m.startswith(('lessons_lib.', 'sklearn'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for heavy in ("lessons_lib.gpt'", "lessons_lib.gpt_structured", "lessons_lib.assignment", "lessons_lib.tasks",
                  "lessons_lib.data", "sklearn"):
        assert heavy not in loaded, f"importing lessons_lib.checks loaded {heavy}: {loaded}"


def test_the_layer_test_catches_an_upward_import(tmp_path, monkeypatch):
    """The check above can fail: a core module importing from the course layer is reported."""
    fake = tmp_path / "lessons_lib"
    fake.mkdir()
    (fake / "sparsity.py").write_text("from .training import accuracy\nfrom .validate import _is_index\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    with pytest.raises(AssertionError, match="imports must go down the layers"):
        test_imports_go_down_the_layers_only("sparsity")
    with pytest.raises(AssertionError, match=r"imports \['_is_index'\] from validate"):
        test_no_module_imports_another_modules_private_names("sparsity")
