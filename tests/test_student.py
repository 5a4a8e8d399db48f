"""Student versions: built with nbgrader's preprocessors, no solution left, stubs fail politely."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
WITH_EXERCISES = [p for p in NOTEBOOKS if "### BEGIN SOLUTION" in p.read_text()]


def _builder():
    spec = importlib.util.spec_from_file_location("build_student", ROOT / "scripts" / "build_student.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("student")
    written = _builder().build_student_versions(ROOT / "notebooks", out)
    assert [p.name for p in written] == [p.name for p in NOTEBOOKS]
    return out


def _solution_lines(path: Path) -> tuple[list[str], set[str]]:
    """(lines inside solution regions, lines outside them) of an instructor notebook, stripped."""
    inside_lines, outside_lines, inside = [], set(), False
    for cell in json.loads(path.read_text())["cells"]:
        for line in "".join(cell["source"]).splitlines():
            if "### END SOLUTION" in line:
                inside = False
            (inside_lines.append if inside else outside_lines.add)(line.strip())
            if "### BEGIN SOLUTION" in line:
                inside = True
    return [line for line in inside_lines if line], outside_lines


def test_exercises_exist():
    assert {p.name for p in WITH_EXERCISES} >= {"00_start_here.ipynb", "01_magnitude_masks.ipynb"}


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=lambda p: p.name)
def test_no_solution_code_remains(path, student_dir):
    student = nbformat.read(student_dir / path.name, as_version=4)
    code = "\n".join(c.source for c in student.cells)
    assert "BEGIN SOLUTION" not in code and "END SOLUTION" not in code
    assert "raise NotImplementedError()" in code
    solution, elsewhere = _solution_lines(path)
    student_lines = {s.strip() for s in code.splitlines()}
    leftovers = [line for line in solution if line in student_lines and line not in elsewhere]
    assert leftovers == []
    assert all(not c.get("outputs") for c in student.cells if c.cell_type == "code")


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=lambda p: p.name)
def test_untouched_student_notebook_fails_only_at_its_checks(path, student_dir):
    student = nbformat.read(student_dir / path.name, as_version=4)
    # run up to the last exercise check: what follows uses the library, not the learner's code
    last_check = max(i for i, c in enumerate(student.cells) if c.cell_type == "code" and "check_" in c.source
                     and "import" not in c.source)
    student.cells = student.cells[:last_check + 1]
    NotebookClient(student, timeout=300, allow_errors=True, kernel_name="python3",
                   resources={"metadata": {"path": str(student_dir)}}).execute()
    errors = [(cell.source, out) for cell in student.cells if cell.cell_type == "code"
              for out in cell.outputs if out.output_type == "error"]
    exercises = sum("### BEGIN SOLUTION" in "".join(c["source"]) for c in json.loads(path.read_text())["cells"])
    assert len(errors) == exercises, [out.evalue for _, out in errors]
    for source, out in errors:
        assert "check_" in source, f"a cell other than a check failed: {source[:80]}"
        assert out.ename == "ExerciseFailure" and "is not implemented yet" in out.evalue
        assert len(out.traceback) <= 2, "the checker should show its message, not a traceback"


def test_exercise_cells_carry_nbgrader_metadata():
    """Solution and check cells are marked the way nbgrader expects, so a course can use them as is."""
    ids = []
    for path in WITH_EXERCISES:
        cells = json.loads(path.read_text())["cells"]
        for i, cell in enumerate(cells):
            meta = cell["metadata"].get("nbgrader")
            if "### BEGIN SOLUTION" in "".join(cell["source"]):
                assert meta and meta["solution"] and not meta["grade"], f"{path.name}: solution cell unmarked"
                check = next(c for c in cells[i + 1:] if c["cell_type"] == "code")
                check_meta = check["metadata"].get("nbgrader")
                assert check_meta and check_meta["grade"] and check_meta["points"] > 0, f"{path.name}: check unmarked"
                assert "check_" in "".join(check["source"])
                ids += [meta["grade_id"], check_meta["grade_id"]]
    assert len(ids) == len(set(ids)) and len(ids) >= 2 * len(WITH_EXERCISES)
