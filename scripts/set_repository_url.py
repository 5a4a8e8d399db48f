"""Keep the public repository address in one place: ``[project.urls] Repository`` in pyproject.toml.

    python scripts/set_repository_url.py                                 # copy it everywhere it is used
    python scripts/set_repository_url.py https://github.com/OWNER/NAME   # change it, then copy it

The address is used by every lesson's set-up cell (the line that installs the series on Colab,
which opens a single notebook with nothing else of the repository), by README's Binder and
Colab links, and by the exercise versions' links to the solved lessons (exercises/ is rebuilt).
tests/test_repository.py fails when any of them differs from pyproject.toml.
Notebooks keep their outputs: only the set-up cell's source is rewritten.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
GITHUB = re.compile(r"https://github\.com/([\w.-]+)/([\w.-]+)")
INSTALL = re.compile(r'(%pip install --quiet "lessons_lib @ git\+)[^"]*(")')
BINDER = re.compile(r"(https://mybinder\.org/v2/gh/)[\w.-]+/[\w.-]+(/HEAD)")
COLAB = re.compile(r"(https://colab\.research\.google\.com/github/)[\w.-]+/[\w.-]+(/blob/main/)")
PYPROJECT_URL = re.compile(r'(\[project\.urls\]\s*\nRepository = ")([^"]*)(")')


def repository_url(root: Path = ROOT) -> str:
    """The address pyproject.toml records, e.g. ``https://github.com/OWNER/NAME``."""
    match = PYPROJECT_URL.search((root / "pyproject.toml").read_text())
    if not match:
        raise ValueError('pyproject.toml has no [project.urls] section starting with Repository = "..."')
    return match[2]


def _owner_name(url: str) -> str:
    match = GITHUB.fullmatch(url)
    if not match:
        raise ValueError(f"url must look like https://github.com/OWNER/NAME (Binder and Colab read GitHub), "
                         f"got {url!r}")
    return f"{match[1]}/{match[2]}"


def places(root: Path = ROOT) -> dict[Path, str]:
    """Every file that uses the address, with the text it should have."""
    url = repository_url(root)
    owner_name = _owner_name(url)
    wanted = {}
    readme = (root / "README.md").read_text()
    readme = BINDER.sub(rf"\g<1>{owner_name}\g<2>", readme)
    wanted[root / "README.md"] = COLAB.sub(rf"\g<1>{owner_name}\g<2>", readme)
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        setup = next(c for c in nb.cells if c.cell_type == "code")
        setup.source = INSTALL.sub(rf"\g<1>{url}\g<2>", setup.source)
        text = nbformat.writes(nb)
        wanted[path] = text if text.endswith("\n") else text + "\n"     # as nbformat.write leaves it
    return wanted


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        sys.exit("usage: python scripts/set_repository_url.py [https://github.com/OWNER/NAME]")
    if argv:
        _owner_name(argv[0])
        pyproject = ROOT / "pyproject.toml"
        pyproject.write_text(PYPROJECT_URL.sub(rf"\g<1>{argv[0]}\g<3>", pyproject.read_text()))
    for path, text in places().items():
        if path.read_text() != text:
            path.write_text(text)
            print(f"updated {path.relative_to(ROOT)}")
    try:   # exercises/ is built from notebooks/ and links to the solved lessons at this address
        from build_exercises import build_exercises
    except ImportError as missing:
        print(f"exercises/ not rebuilt ({missing}): run make exercises")
    else:
        build_exercises()
        print("rebuilt exercises/")
    print(f"repository: {repository_url()}")


if __name__ == "__main__":
    main(sys.argv[1:])
