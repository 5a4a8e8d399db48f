"""scripts/build_exercises.py: which outputs an exercise version keeps, its notes and links, bad input.

The real lessons are built into temporary folders; the finer points are checked on small
notebooks made here. Nothing is executed.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
URL = "https://github.com/someone/fork"


def _script():
    spec = importlib.util.spec_from_file_location("build_exercises", ROOT / "scripts" / "build_exercises.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _script()


def _valid_with_unique_ids(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    ids = [cell.id for cell in nb.cells]
    assert len(ids) == len(set(ids)), f"{path.name}: repeated cell ids"


def test_building_twice_gives_the_same_bytes_and_valid_notebooks(tmp_path):
    first = build.build_exercises(ROOT / "notebooks", tmp_path / "a", url=URL)
    second = build.build_exercises(ROOT / "notebooks", tmp_path / "b", url=URL)
    lessons = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert [p.name for p in first] == [p.name for p in second] == lessons
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
        _valid_with_unique_ids(a)


@pytest.mark.parametrize("path", sorted((ROOT / "exercises").glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_exercise_versions_are_valid(path):
    _valid_with_unique_ids(path)


def test_an_exercise_version_is_not_built_again(tmp_path):
    with pytest.raises(ValueError, match="already an exercise version .* build from the solved lesson in notebooks/"):
        build.build_exercises(ROOT / "exercises", tmp_path / "again", url=URL)
    assert not (tmp_path / "again").exists()                # refused before anything was written


def test_dest_may_not_be_src(tmp_path):
    shutil.copy(ROOT / "notebooks" / "00_start_here.ipynb", tmp_path)
    before = (tmp_path / "00_start_here.ipynb").read_bytes()
    with pytest.raises(ValueError, match="dest must differ from src"):
        build.build_exercises(tmp_path, tmp_path / ".", url=URL)
    assert (tmp_path / "00_start_here.ipynb").read_bytes() == before
    with pytest.raises(FileNotFoundError, match="holds no .ipynb files"):
        build.build_exercises(tmp_path / "empty", tmp_path / "out", url=URL)


@pytest.mark.parametrize("url", [URL, URL + "/", URL + ".git"])
def test_solution_links_point_at_the_given_fork(tmp_path, url):
    (path,) = [p for p in build.build_exercises(ROOT / "notebooks", tmp_path, url=url) if p.name.startswith("01_")]
    cells = nbformat.read(path, as_version=4).cells
    notes = [c.source for c in cells if c.id == build.NOTE_ID or c.id.endswith("-solution")]
    assert len(notes) == 2
    assert all(f"({URL}/blob/main/notebooks/01_magnitude_masks.ipynb)" in note for note in notes)


@pytest.mark.parametrize("url", ["https://gitlab.com/someone/fork", "github.com/someone/fork",
                                 "https://github.com/someone"])
def test_a_url_that_is_not_a_github_repository_is_refused(tmp_path, url):
    with pytest.raises(ValueError, match="url must look like https://github.com/OWNER/NAME"):
        build.build_exercises(ROOT / "notebooks", tmp_path, url=url)
    assert not any(tmp_path.iterdir())


# --- small notebooks --------------------------------------------------------------------------------

SOLUTION = '''def count(t):
    """How many zeros."""
    k = 0
    ### BEGIN SOLUTION
    import math as m
    for i in range(3):
        k += i
    with open(__file__) as handle:
        pass
    ### END SOLUTION
    return k'''


def _lesson(*sources: str, solution: int | None = 1, grade: int | None = 2, minor: int = 5) -> nbformat.NotebookNode:
    """A notebook: a title, then one code cell per source, each with the output "out <i>"."""
    nb = nbformat.v4.new_notebook()
    nb.nbformat_minor = minor
    nb.cells = [nbformat.v4.new_markdown_cell("# Title")]
    for i, source in enumerate(sources, 1):
        cell = nbformat.v4.new_code_cell(source, execution_count=i, outputs=[
            nbformat.v4.new_output("stream", name="stdout", text=f"out {i}")])
        if i in (solution, grade):
            cell.metadata["nbgrader"] = {"solution": i == solution, "grade": i == grade, "grade_id": f"c{i}",
                                         "locked": i == grade, "schema_version": 3}
            if i == grade:
                cell.metadata["nbgrader"]["points"] = 1
        nb.cells.append(cell)
    for i, cell in enumerate(nb.cells):
        if minor < 5:
            cell.pop("id")
        else:
            cell.id = f"cell-{i}"
    return nb


def _kept(nb: nbformat.NotebookNode) -> dict[str, bool]:
    """Each code cell's source -> whether it kept its output."""
    return {cell.source: bool(cell.outputs) for cell in nb.cells if cell.cell_type == "code"}


def test_a_lesson_without_exercises_comes_back_unchanged():
    nb = _lesson("x = 1", "print(x)", solution=None, grade=None)
    original = copy.deepcopy(nb)
    assert build.build_exercise_notebook(nb, URL + "/blob/main/notebooks/a.ipynb") == original
    assert nb == original


def test_outputs_that_depend_on_the_exercise_are_cleared_and_no_others():
    later = {
        "import torch\nprint(torch.ones(2))": True,              # nothing from the exercise
        "from lessons_lib.checks import ExerciseFailure, check_count\nscore = check_count(count)": False,
        "print(ExerciseFailure)": True,                            # imported beside the check, not by it
        "points = score.points": False,
        "print(points)": False,                                    # through another name
        "table = {}\ntable['score'] = points": False,
        "print(table)": False,                                     # an item assigned from it
        "points = 3": True,
        "print(points + 1)": True,                                 # rebound from clean values
        "print(k)": True,                                          # k is local to count
        "%time y = count([0])": False,
        "print(y)": False,                                         # bound inside a magic
        "%%time\nz = count([1])": False,
        "%matplotlib inline": True,
        "x = !echo hi\nprint(x)": True,
        "%%bash\necho $count": False,                              # not Python: any name counts
        "for n in range(2):\n    total = count(n)": False,
        "print(total, n)": False,
    }
    nb = build.build_exercise_notebook(_lesson(SOLUTION, *later, grade=3), URL + "/blob/main/notebooks/a.ipynb")
    kept = _kept(nb)
    assert "raise NotImplementedError()" in nb.cells[2].source and not nb.cells[2].outputs
    assert {source: kept[source] for source in later} == later
    nbformat.validate(nb)


def test_names_bound_by_the_solution_region_are_tracked():
    solution = ("### BEGIN SOLUTION\nimport math as m\nfor i in range(3):\n    pass\n"
                "with open('f') as handle:\n    pass\n### END SOLUTION")
    later = ["print(m.pi)", "print(i)", "print(handle)", "print(math)"]
    nb = build.build_exercise_notebook(_lesson(solution, *later, grade=None), URL + "/blob/main/notebooks/a.ipynb")
    assert _kept(nb) == {"# YOUR CODE HERE\nraise NotImplementedError()": False, "print(m.pi)": False,
                         "print(i)": False, "print(handle)": False, "print(math)": True}


def test_notes_and_ids():
    url = URL + "/blob/main/notebooks/a.ipynb"
    nb = build.build_exercise_notebook(_lesson(SOLUTION, "check(count)"), url)
    assert [c.id for c in nb.cells] == ["cell-0", "exercise-version", "cell-1", "cell-1-solution", "cell-2"]
    assert f"[a.ipynb]({url})" in nb.cells[1].source and f"[solved lesson]({url})" in nb.cells[3].source

    lesson = _lesson(SOLUTION, "check(count)", "print(1)")
    lesson.cells[1].id = "s" * 64                              # nbformat's longest id: the note's must fit too
    nb = build.build_exercise_notebook(lesson, url)
    nbformat.validate(nb)
    ids = [c.id for c in nb.cells]
    assert len(ids) == len(set(ids)) and all(len(i) <= 64 for i in ids)

    lesson = _lesson(SOLUTION, "check(count)")
    lesson.cells[2].id = "cell-1-solution"                     # the note's usual id is taken
    nb = build.build_exercise_notebook(lesson, url)
    nbformat.validate(nb)
    assert len({c.id for c in nb.cells}) == len(nb.cells)


def test_an_older_notebook_without_cell_ids_builds():
    nb = build.build_exercise_notebook(_lesson(SOLUTION, "check(count)", minor=4), URL + "/blob/main/notebooks/a.ipynb")
    nbformat.validate(nb)
    assert nb.nbformat_minor == 4 and not any("id" in cell for cell in nb.cells) and len(nb.cells) == 5


def test_a_solution_region_outside_a_marked_cell_is_still_an_exercise():
    nb = build.build_exercise_notebook(_lesson(SOLUTION, "print(count([0]))", solution=None, grade=None),
                                       URL + "/blob/main/notebooks/a.ipynb")
    assert "BEGIN SOLUTION" not in nb.cells[2].source and not nb.cells[2].outputs
    assert nb.cells[3].id == "cell-1-solution" and not nb.cells[4].outputs


# --- make lab: the learner's copies ------------------------------------------------------------------

def _fake_checkout(tmp_path: Path) -> tuple[Path, Path]:
    """A folder with the Makefile, pyproject.toml, two exercise versions and a learner venv whose
    set-up is done (its stamp newer than pyproject.toml) and whose ``jupyter`` only logs its arguments."""
    shutil.copy(ROOT / "Makefile", tmp_path)
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / "exercises").mkdir()
    for name in ("00_start_here.ipynb", "01_magnitude_masks.ipynb"):
        (tmp_path / "exercises" / name).write_text(f'{{"lesson": "{name}"}}')
    jupyter = tmp_path / "venv" / "bin" / "jupyter"
    jupyter.parent.mkdir(parents=True)
    log = tmp_path / "jupyter.log"
    jupyter.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\n')
    jupyter.chmod(0o755)
    (tmp_path / "venv" / ".installed").touch()
    stamp_time = (tmp_path / "pyproject.toml").stat().st_mtime + 10
    os.utime(tmp_path / "venv" / ".installed", (stamp_time, stamp_time))
    return tmp_path, log


def _make(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """``make ARGS lab`` in ``folder`` with the fake venv, as a top-level make (also under make test)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    return subprocess.run(["make", "--no-print-directory", *args, "lab", "VENV=venv", "WORKSPACE=ws"], cwd=folder,
                          capture_output=True, text=True, timeout=60, env=env)


def _make_lab(folder: Path) -> str:
    done = _make(folder, "-s")
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_lab_copies_each_lesson_once_and_never_overwrites(tmp_path):
    folder, log = _fake_checkout(tmp_path)
    out = _make_lab(folder)
    assert out.splitlines() == ["new in ws/: 00_start_here.ipynb", "new in ws/: 01_magnitude_masks.ipynb"]
    assert log.read_text().splitlines() == ["trust ws/00_start_here.ipynb", "trust ws/01_magnitude_masks.ipynb",
                                            "lab ws/"]
    ws = folder / "ws"
    (ws / "00_start_here.ipynb").write_text("my work")
    (ws / "mine.ipynb").write_text("my own notebook")
    (ws / "01_magnitude_masks.ipynb").unlink()
    log.unlink()
    out = _make_lab(folder)
    assert out.splitlines() == ["new in ws/: 01_magnitude_masks.ipynb"]            # only the missing one
    assert (ws / "00_start_here.ipynb").read_text() == "my work"
    assert (ws / "mine.ipynb").read_text() == "my own notebook"
    assert log.read_text().splitlines() == ["trust ws/01_magnitude_masks.ipynb", "lab ws/"]   # not mine


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_lab_sets_up_the_learner_environment_without_teacher_tools(tmp_path):
    folder, _ = _fake_checkout(tmp_path)
    (folder / "venv" / ".installed").unlink()                 # set-up not done yet: make -n shows it
    done = _make(folder, "-n")
    installs = [line for line in done.stdout.splitlines() if "pip install" in line]
    assert done.returncode == 0 and len(installs) == 2, done.stdout + done.stderr
    assert installs[1].endswith('-e ".[lab]"')
    assert not any(word in line for line in installs for word in ("test", "teach", "nbgrader"))
    assert "venv-dev" not in done.stdout and ".venv-dev" not in done.stdout
