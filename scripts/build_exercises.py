"""Write the exercise versions of the lessons, the ones every learner entry point opens.

    python scripts/build_exercises.py            # notebooks/ -> exercises/ (what `make exercises` runs)
    python scripts/build_exercises.py SRC DEST

The solved lessons in ``notebooks/`` stay the source of truth (nbval checks them). An exercise
version is the same notebook with:

- every ``### BEGIN/END SOLUTION`` region replaced by ``raise NotImplementedError()``
  (nbgrader's own ``ClearSolutions``, as ``make student`` uses);
- the outputs of the solution cells, of the cells that check them, and of any later cell that
  uses a name those cells define (``score`` in lesson 08) cleared: everything else keeps the
  solved run's outputs, which are exactly what the exercise version prints, because the cells
  after an exercise use the library's own version of what the learner writes;
- a note under the title and under each exercise saying where the solution is.

``exercises/`` is committed (Binder and Colab open it from GitHub); a test rebuilds it and
compares, so it can never drift from ``notebooks/``. ``make student`` is different: it clears
every output, for a class that releases the lessons with nbgrader.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import nbformat
from nbgrader.preprocessors import ClearSolutions

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from set_repository_url import repository_url  # noqa: E402


def _names(source: str, defined: bool) -> set[str]:
    """Top-level names a cell defines (``defined``) or reads; IPython magics are skipped."""
    code = "\n".join("" if re.match(r"\s*[%!]", line) else line for line in source.splitlines())
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    if not defined:
        return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    found = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return found


def _note(cell_id: str, text: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_markdown_cell(text)
    cell.id = cell_id
    return cell


def build_exercise_notebook(nb: nbformat.NotebookNode, solved_url: str) -> nbformat.NotebookNode:
    """Return the exercise version of the solved lesson ``nb`` (a copy; ``nb`` is left as it is).

    ``solved_url``: where a learner reads the solved lesson (its address on GitHub)."""
    nb = nbformat.from_dict(nb)
    graded = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")
              or c.metadata.get("nbgrader", {}).get("grade")]
    if not graded:
        return nb
    learner_names = set().union(*(_names(c.source, defined=True) for c in graded))
    nb, _ = ClearSolutions(enforce_metadata=False).preprocess(nb, {})
    cells = []
    for cell in nb.cells:
        nbgrader = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and (nbgrader.get("solution") or nbgrader.get("grade")
                                         or _names(cell.source, defined=False) & learner_names):
            cell.outputs, cell.execution_count = [], None
        cells.append(cell)
        if cell is nb.cells[0]:
            cells.append(_note("exercise-version", (
                "*This is the **exercise version** of the lesson: the \"Your turn\" cells are yours to fill "
                "in. Until you do, their check says \"not implemented yet\" and scores 0, and the rest of the "
                f"lesson still runs. The solved lesson: [{solved_url.rsplit('/', 1)[1]}]({solved_url})"
                " (or, in a clone, `make lab-solutions`).*")))
        if nbgrader.get("solution") and cell.cell_type == "code":
            cells.append(_note(f"{cell.id}-solution", (
                f"*Stuck? The worked solution is in the [solved lesson]({solved_url}), in the same cell.*")))
    nb.cells = cells
    return nb


def build_exercises(src: Path = ROOT / "notebooks", dest: Path = ROOT / "exercises",
                    url: str | None = None) -> list[Path]:
    """Write the exercise version of every ``*.ipynb`` in ``src`` into ``dest``; return their paths.

    ``url``: the repository's address (default: pyproject.toml's), for the links to the solutions."""
    notebooks = sorted(src.glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"src={str(src)!r} holds no .ipynb files; expected the lessons folder")
    dest.mkdir(parents=True, exist_ok=True)
    base = f"{url or repository_url(ROOT)}/blob/main/notebooks/"
    written = []
    for path in notebooks:
        exercise = build_exercise_notebook(nbformat.read(path, as_version=4), base + path.name)
        nbformat.write(exercise, dest / path.name)
        written.append(dest / path.name)
    return written


if __name__ == "__main__":
    if len(sys.argv) not in (1, 3):
        sys.exit("usage: python scripts/build_exercises.py [SRC_NOTEBOOKS_DIR DEST_DIR]")
    args = [Path(a) for a in sys.argv[1:]]
    for written in build_exercises(*args):
        print(f"wrote {written}")
