"""Write the exercise versions of the lessons, the ones every learner entry point opens.

    python scripts/build_exercises.py            # notebooks/ -> exercises/ (what `make exercises` runs)
    python scripts/build_exercises.py SRC DEST

The solved lessons in ``notebooks/`` stay the source of truth (nbval checks them). An exercise
version is the same notebook with:

- every ``### BEGIN/END SOLUTION`` region replaced by ``raise NotImplementedError()``
  (nbgrader's own ``ClearSolutions``, as ``make student`` uses);
- the outputs of the solution cells, of the cells that check them, and of any later cell that
  reads a name whose value came from them, directly or through other names (``score`` in lesson
  10, and whatever is computed from it) cleared: everything else keeps the solved run's outputs,
  which are exactly what the exercise version prints, because the cells after an exercise use
  the library's own version of what the learner writes;
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
from IPython.core.inputtransformer2 import TransformerManager
from nbgrader.preprocessors import ClearSolutions

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from set_repository_url import _owner_name, repository_url  # noqa: E402

NOTE_ID = "exercise-version"          # the note under the title; a notebook that has it was built already
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
_MAGIC_CALLS = {"run_line_magic", "run_cell_magic", "system", "getoutput"}     # what IPython syntax becomes
# scopes whose names stay local (a def or class binds only its own name, handled before these)
_LOCAL_SCOPES = (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _statements(source: str) -> list[tuple[set[str], set[str]]]:
    """(names read, names bound in the notebook's namespace) for each top-level statement of a cell.

    IPython syntax (``%time``, ``!pip``, ``x = !ls``, ``%%time``) is first turned into Python as IPython
    does, and the code a magic runs is read too (``%time y = f(x)`` reads f, x and binds y). A cell that
    is not Python reads every identifier in it and binds nothing."""
    try:
        tree = ast.parse(TransformerManager().transform_cell(source))
    except SyntaxError:
        return [(set(_IDENTIFIER.findall(source)), set())]
    return [_statement_names(statement) for statement in tree.body]


def _statement_names(statement: ast.stmt) -> tuple[set[str], set[str]]:
    """What one statement reads and binds, with the code inside the magics it calls."""
    nodes = list(ast.walk(statement))
    reads = {n.id for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    reads |= {n.target.id for n in nodes if isinstance(n, ast.AugAssign) and isinstance(n.target, ast.Name)}
    binds = _bound(statement)
    for call in nodes:
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr in _MAGIC_CALLS:
            for arg in call.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    for inner_reads, inner_binds in _statements(arg.value):
                        reads, binds = reads | inner_reads, binds | inner_binds
    return reads, binds


def _bound(node: ast.AST) -> set[str]:
    """Names ``node`` binds in the notebook's namespace: assignments (also to an item or attribute of a
    name, which changes that name's object), ``for`` and ``with`` targets, imports, definitions; not
    the names local to a function, lambda or comprehension."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(alias.asname or alias.name).split(".")[0] for alias in node.names if alias.name != "*"}
    if isinstance(getattr(node, "ctx", None), (ast.Store, ast.Del)):
        while isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):
            node = node.value
        if isinstance(node, ast.Name):
            return {node.id}
    return set().union(*(_bound(child) for child in ast.iter_child_nodes(node)
                         if not isinstance(child, _LOCAL_SCOPES)), set())


def _clear_stale_outputs(cells: list, solved: list[str | None]) -> None:
    """Clear the outputs the exercise version would not print: those of the solution cells (whose
    solved source is ``solved[i]``, None for the other cells) and of the check cells, and of every
    later cell that reads a name whose value came from them, directly or through other names. A
    statement that rebinds a name from clean values makes it clean again."""
    tainted: set[str] = set()
    for cell, solution in zip(cells, solved, strict=True):
        if cell.cell_type != "code":
            continue
        stale = solution is not None or bool(cell.metadata.get("nbgrader", {}).get("grade"))
        for reads, binds in _statements(cell.source) + _statements(solution or ""):
            if solution is not None or reads & tainted:
                tainted |= binds
                stale = True
            else:
                tainted -= binds
        if stale:
            cell.outputs, cell.execution_count = [], None


def _note(text: str, cell_id: str | None) -> nbformat.NotebookNode:
    """A markdown note; ``cell_id`` None for a notebook older than nbformat 4.5 (no cell ids)."""
    cell = nbformat.v4.new_markdown_cell(text)
    cell.pop("id", None)
    if cell_id is not None:
        cell.id = cell_id
    return cell


def _fresh_id(base: str, taken: set[str]) -> str:
    """``base`` (cut to nbformat's 64 characters), or ``base-2``, ``base-3`` ... if a cell has it already."""
    candidate, n = base[:64], 1
    while candidate in taken:
        n += 1
        candidate = f"{base[:60]}-{n}"
    taken.add(candidate)
    return candidate


def _with_notes(cells: list, rewritten: list[bool], solved_url: str) -> list:
    """``cells`` with a note under the title and one under each exercise, saying where the solution is."""
    taken = {cell.get("id") for cell in cells}
    with_ids = all("id" in cell for cell in cells)
    out = [cells[0], _note(
        "*This is the **exercise version** of the lesson: the \"Your turn\" cells are yours to fill in. Until "
        "you do, their check says \"not implemented yet\" and scores 0, and the rest of the lesson still runs. "
        f"The solved lesson: [{solved_url.rsplit('/', 1)[1]}]({solved_url}) (or, in a clone, "
        "`make lab-solutions`).*", _fresh_id(NOTE_ID, taken) if with_ids else None)]
    for cell, solution in zip(cells[1:], rewritten[1:], strict=True):
        out.append(cell)
        if solution and cell.cell_type == "code":
            defined = re.search(r"^def (\w+)", cell.source, re.M)
            what = f"`{defined[1]}`" if defined else "this cell"
            out.append(_note(f"*Stuck? The worked solution of {what} is in the [solved lesson]({solved_url}) "
                             "(offline: `make lab-solutions`), in the same place, marked as the solution.*",
                             _fresh_id(f"{cell.id}-solution", taken) if with_ids else None))
    return out


def build_exercise_notebook(nb: nbformat.NotebookNode, solved_url: str) -> nbformat.NotebookNode:
    """Return the exercise version of the solved lesson ``nb`` (a copy; ``nb`` is left as it is).
    A lesson without exercises comes back unchanged.

    ``solved_url``: where a learner reads the solved lesson (its address on GitHub). Raises
    ValueError for a notebook that is an exercise version already."""
    if any(cell.get("id") == NOTE_ID for cell in nb.cells):
        raise ValueError(f"this notebook is already an exercise version (it has the {NOTE_ID!r} note): "
                         "build from the solved lesson in notebooks/")
    exercise = nbformat.from_dict(nb)
    before = [cell.source for cell in exercise.cells]
    exercise, _ = ClearSolutions(enforce_metadata=False).preprocess(exercise, {})
    solved = [old if cell.metadata.get("nbgrader", {}).get("solution") or cell.source != old else None
              for cell, old in zip(exercise.cells, before, strict=True)]
    if solved == [None] * len(solved) and not any(c.metadata.get("nbgrader", {}).get("grade") for c in exercise.cells):
        return nbformat.from_dict(nb)
    _clear_stale_outputs(exercise.cells, solved)
    exercise.cells = _with_notes(exercise.cells, [s is not None for s in solved], solved_url)
    return exercise


def build_exercises(src: Path = ROOT / "notebooks", dest: Path = ROOT / "exercises",
                    url: str | None = None) -> list[Path]:
    """Write the exercise version of every ``*.ipynb`` in ``src`` into ``dest``; return their paths.

    ``url``: the repository's address on GitHub (default: pyproject.toml's), for the links to the
    solutions; a trailing ``/`` or ``.git`` is dropped."""
    src, dest = Path(src), Path(dest)
    notebooks = sorted(src.glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"src={str(src)!r} holds no .ipynb files; expected the lessons folder")
    if dest.resolve() == src.resolve():
        raise ValueError(f"dest must differ from src (both {str(src)!r}): the exercise versions would replace "
                         "the solved lessons")
    url = (url or repository_url(ROOT)).rstrip("/").removesuffix(".git")
    _owner_name(url)                                  # a clear error for anything but https://github.com/OWNER/NAME
    base = f"{url}/blob/main/notebooks/"
    exercises = {path.name: build_exercise_notebook(nbformat.read(path, as_version=4), base + path.name)
                 for path in notebooks}               # all built before any is written
    dest.mkdir(parents=True, exist_ok=True)
    for name, exercise in exercises.items():
        nbformat.write(exercise, dest / name)
    return [dest / name for name in exercises]


if __name__ == "__main__":
    if len(sys.argv) not in (1, 3):
        sys.exit("usage: python scripts/build_exercises.py [SRC_NOTEBOOKS_DIR DEST_DIR]")
    args = [Path(a) for a in sys.argv[1:]]
    for written in build_exercises(*args):
        print(f"wrote {written}")
