"""Exercise versions (what learners open) and student versions (what nbgrader releases).

exercises/ is committed so that Binder and Colab can open it: it must be exactly what
scripts/build_exercises.py makes of notebooks/, keep no solution, and run top to bottom with
every exercise untouched, printing the outputs it carries.
"""

from __future__ import annotations

import configparser
import filecmp
import importlib.util
import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
WITH_EXERCISES = [p for p in NOTEBOOKS if "### BEGIN SOLUTION" in p.read_text()]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("student")
    written = _script("build_student").build_student_versions(ROOT / "notebooks", out)
    assert [p.name for p in written] == [p.name for p in NOTEBOOKS]
    return out


@pytest.fixture(scope="module")
def exercise_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exercises")
    written = _script("build_exercises").build_exercises(ROOT / "notebooks", out)
    assert [p.name for p in written] == [p.name for p in NOTEBOOKS]
    return out


def test_committed_exercises_are_exactly_what_the_build_makes(exercise_dir):
    committed = sorted(p.name for p in (ROOT / "exercises").glob("*.ipynb"))
    assert committed == [p.name for p in NOTEBOOKS], "run make exercises"
    _, differ, missing = filecmp.cmpfiles(ROOT / "exercises", exercise_dir, committed, shallow=False)
    assert differ == [] and missing == [], f"exercises/ is stale, run make exercises: {differ + missing}"


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


def _n_exercises(path: Path) -> int:
    return sum("### BEGIN SOLUTION" in "".join(c["source"]) for c in json.loads(path.read_text())["cells"])


def test_exercises_exist():
    assert {p.name for p in WITH_EXERCISES} >= {"00_start_here.ipynb", "01_magnitude_masks.ipynb"}


@pytest.mark.parametrize("kind", ["student", "exercise"])
@pytest.mark.parametrize("path", WITH_EXERCISES, ids=lambda p: p.name)
def test_no_solution_code_remains(path, kind, student_dir, exercise_dir):
    built = nbformat.read((student_dir if kind == "student" else exercise_dir) / path.name, as_version=4)
    code = "\n".join(c.source for c in built.cells)
    assert "BEGIN SOLUTION" not in code and "END SOLUTION" not in code
    assert "raise NotImplementedError()" in code
    solution, elsewhere = _solution_lines(path)
    built_lines = {s.strip() for s in code.splitlines()}
    leftovers = [line for line in solution if line in built_lines and line not in elsewhere]
    assert leftovers == []
    outputs = [c.get("outputs") for c in built.cells if c.cell_type == "code"]
    if kind == "student":                                    # nbgrader release: nothing pre-run
        assert not any(outputs)
    else:                                                    # readable before it runs: figures kept,
        assert sum(bool(o) for o in outputs) >= 3            # solution and check outputs gone
        for cell in built.cells:
            if cell.metadata.get("nbgrader", {}).get("grade") or cell.metadata.get("nbgrader", {}).get("solution"):
                assert not cell.get("outputs") and cell.get("execution_count") is None
        notes = [c.source for c in built.cells if c.id == "exercise-version" or c.id.endswith("-solution")]
        assert len(notes) == 1 + _n_exercises(path)                # one under the title, one per exercise
        assert all(f"/blob/main/notebooks/{path.name})" in note for note in notes)


def test_lessons_without_exercises_are_copied_unchanged(exercise_dir):
    for path in NOTEBOOKS:
        if path not in WITH_EXERCISES:
            assert nbformat.read(exercise_dir / path.name, as_version=4) == nbformat.read(path, as_version=4)


def _sanitize(text: str) -> str:
    config = configparser.ConfigParser()
    config.read(ROOT / "tests" / "sanitize.cfg")
    for section in config.sections():
        text = re.sub(config[section]["regex"], config[section]["replace"], text)
    return text


def _shown(outputs: list) -> list[tuple[str, str]]:
    """What nbval compares: stream text (consecutive chunks of one stream joined, as nbval does) and the
    plain text of results and displays."""
    shown = []
    for out in outputs:
        if out.output_type == "stream":
            if shown and shown[-1][0] == out.name:       # the kernel may send one print in two chunks
                shown[-1] = (out.name, shown[-1][1] + _sanitize(out.text))
            else:
                shown.append((out.name, _sanitize(out.text)))
        elif out.output_type in ("display_data", "execute_result"):
            shown.append((out.output_type, _sanitize(out.data.get("text/plain", ""))))
        else:
            shown.append((out.output_type, out.get("ename", "")))
    return shown


@pytest.mark.slow
@pytest.mark.parametrize("path", WITH_EXERCISES, ids=lambda p: p.name)
def test_untouched_exercise_version_runs_to_the_end(path, exercise_dir):
    """Run All with every exercise untouched: no cell fails, each check says "not implemented yet"
    and scores 0, and every output the exercise version carries is what it prints."""
    stored = nbformat.read(exercise_dir / path.name, as_version=4)
    ran = nbformat.read(exercise_dir / path.name, as_version=4)
    NotebookClient(ran, timeout=300, kernel_name="python3",            # allow_errors=False: any error fails
                   resources={"metadata": {"path": str(exercise_dir)}}).execute()
    checks = 0
    for before, after in zip(stored.cells, ran.cells, strict=True):
        if after.cell_type != "code":
            continue
        assert all(out.output_type != "error" for out in after.outputs)
        assert not [out for out in after.outputs if out.output_type == "stream" and out.name == "stderr"], \
            f"writes to stderr: {after.source[:80]}"
        if after.metadata.get("nbgrader", {}).get("grade"):
            checks += 1
            text = "".join(out.text for out in after.outputs if out.output_type == "stream")
            assert "is not implemented yet" in text and ("the library's own" in text or "still run" in text)
            results = [out for out in after.outputs if out.output_type == "execute_result"]
            assert results and float(results[-1].data["text/plain"]) == 0.0       # nbgrader: 0 points
        elif before.outputs and "NBVAL_IGNORE_OUTPUT" not in before.source:
            assert _shown(after.outputs) == _shown(before.outputs), f"stored output differs: {after.source[:80]}"
    assert checks == _n_exercises(path)


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
