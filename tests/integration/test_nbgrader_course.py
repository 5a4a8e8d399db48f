"""The lessons dropped unchanged into an nbgrader course: release, submit, autograde, export.

Runs nbgrader's own command line on a throwaway course with lessons 00 and 10 (about 40 s):
an untouched release scores nothing (lesson 10's grade cell reads 0 for the stub, without an
error), a submission that solves lesson 00 and hands in an un-fine-tuned slim model for lesson
10 gets lesson 00's point plus lesson 10's partial credit (the parameter budget and speed-up
floors; no accuracy, so nothing beyond the floors), and the same model handed in by a function
that also turns the grader's points negative (which nbgrader would read as full credit) gets 0
for lesson 10. Lesson 10 is worth 20 points (10 for the floors, up to 10 beyond), so the course
is worth 21.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
LESSONS = ("00_start_here.ipynb", "10_assignment_prune_to_a_budget.ipynb")
SLIM_BUT_NOT_FINE_TUNED = ("return slim_gpt(dense, {'blocks.0.attn': [0, 1, 2], 'blocks.1.attn': [0, 1, 2]}, "
                           "{'blocks.0.fc1': list(range(53)), 'blocks.1.fc1': list(range(53))})")
NEGATIVE_POINTS = ("import lessons_lib.assignment as grader\n"
                   "    grader.POINTS.update({name: -points for name, points in grader.POINTS.items()})\n"
                   "    " + SLIM_BUT_NOT_FINE_TUNED)
STUDENTS = ("untouched", "partial", "cheater")


def _nbgrader(course: Path, *args: str) -> None:
    bin_dir = str(Path(sys.executable).parent)                   # nbgrader calls alembic from PATH
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    result = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def _solve(release: Path, submitted: Path, name: str, old: str, new: str) -> None:
    nb = nbformat.read(release / name, as_version=4)
    cell = next(c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("solution"))
    assert old in cell.source
    cell.source = cell.source.replace(old, new)
    nbformat.write(nb, submitted / name)


@pytest.mark.slow
def test_release_autograde_and_partial_credit(tmp_path):
    course = tmp_path / "course"
    (course / "source" / "lesson").mkdir(parents=True)
    for name in LESSONS:
        shutil.copy(ROOT / "notebooks" / name, course / "source" / "lesson" / name)
    (course / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.CourseDirectory.course_id = 'pruning'\nc.CourseDirectory.root = {str(course)!r}\n"
        "c.Execute.timeout = 900\n")           # lesson 10's grade cell fine-tunes: more than 30 s
    for student in STUDENTS:
        _nbgrader(course, "db", "student", "add", student)
    _nbgrader(course, "db", "assignment", "add", "lesson")
    _nbgrader(course, "generate_assignment", "lesson", "--force")

    release = course / "release" / "lesson"
    released = nbformat.read(release / LESSONS[1], as_version=4)
    assert "### BEGIN SOLUTION" not in nbformat.writes(released)      # the release holds no solution
    for student in STUDENTS:
        (course / "submitted" / student / "lesson").mkdir(parents=True)
    for name in LESSONS:
        shutil.copy(release / name, course / "submitted" / "untouched" / "lesson" / name)
    partial = course / "submitted" / "partial" / "lesson"
    _solve(release, partial, LESSONS[0], "raise NotImplementedError()", "return int((t == 0).sum())")
    _solve(release, partial, LESSONS[1], "raise NotImplementedError()", SLIM_BUT_NOT_FINE_TUNED)
    cheater = course / "submitted" / "cheater" / "lesson"
    _solve(release, cheater, LESSONS[0], "raise NotImplementedError()", "return int((t == 0).sum())")
    _solve(release, cheater, LESSONS[1], "raise NotImplementedError()", NEGATIVE_POINTS)

    _nbgrader(course, "autograde", "lesson", "--force")
    _nbgrader(course, "export", "--to", str(tmp_path / "grades.csv"))
    with (tmp_path / "grades.csv").open() as f:
        grades = {row["student_id"]: (float(row["score"]), float(row["max_score"])) for row in csv.DictReader(f)}
    assert grades["untouched"] == (0.0, 21.0)
    assert grades["partial"] == (1.0 + 4.0 + 2.0, 21.0)       # count_zeros + budget + speed-up, nothing beyond
    assert grades["cheater"] == (1.0, 21.0)                    # the grader refused lesson 10's model
    untouched = nbformat.read(course / "autograded" / "untouched" / "lesson" / LESSONS[1], as_version=4)
    errors = [c.get("id") for c in untouched.cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, f"lesson 10's untouched stub stopped Run All at cells {errors}"
    grade = next(c for c in untouched.cells if c.metadata.get("nbgrader", {}).get("grade"))
    assert [o["data"]["text/plain"] for o in grade.outputs if o["output_type"] == "execute_result"] == ["0.0"]
