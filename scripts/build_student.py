"""Write student versions of the lessons: solutions replaced by stubs, outputs cleared.

Uses nbgrader's own preprocessors (ClearSolutions, ClearOutput), so an instructor who runs
nbgrader gets the same result. Usage:

    python scripts/build_student.py notebooks build/student
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbgrader.preprocessors import ClearOutput, ClearSolutions


def build_student_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Return a student copy of ``nb``: every ``### BEGIN/END SOLUTION`` region becomes
    ``raise NotImplementedError()`` and every output is cleared."""
    nb = nbformat.from_dict(nb)  # a copy; the instructor's notebook is left as it is
    nb, resources = ClearSolutions(enforce_metadata=False).preprocess(nb, {})
    nb, _ = ClearOutput().preprocess(nb, resources)
    return nb


def build_student_versions(src: Path, dest: Path) -> list[Path]:
    """Write a student copy of every ``*.ipynb`` in ``src`` into ``dest``; return their paths."""
    notebooks = sorted(src.glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"src={str(src)!r} holds no .ipynb files; expected the lessons folder")
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        student = build_student_notebook(nbformat.read(path, as_version=4))
        nbformat.write(student, dest / path.name)
        written.append(dest / path.name)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python scripts/build_student.py SRC_NOTEBOOKS_DIR DEST_DIR")
    for written in build_student_versions(Path(sys.argv[1]), Path(sys.argv[2])):
        print(f"wrote {written}")
