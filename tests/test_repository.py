"""Checks of the repository itself: declared dependencies, notebook hygiene, the lesson template."""

from __future__ import annotations

import ast
import json
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml
from IPython.core.inputtransformer2 import TransformerManager
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
CONDA_TO_PYPI = {"pytorch-cpu": "torch"}   # conda-forge names that differ from PyPI's


def _requirements(names: list[str]) -> dict[str, str]:
    """canonical name -> version specifier, e.g. {"torch": ">=2.2"}."""
    parsed = [Requirement(r) for r in names]
    return {canonicalize_name(r.name): str(r.specifier) for r in parsed}


def test_environment_yml_declares_what_pyproject_declares():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    conda, pip = {}, []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip += dep["pip"]
            continue
        req = Requirement(dep.replace("=", "==", 1) if re.fullmatch(r"[\w.-]+=[\d.]+", dep) else dep)
        if req.name not in ("python", "pip"):
            conda[canonicalize_name(CONDA_TO_PYPI.get(req.name, req.name))] = str(req.specifier)
    declared = _requirements(PYPROJECT["dependencies"] + PYPROJECT["optional-dependencies"]["lab"])
    assert conda == declared, "environment.yml and pyproject.toml (dependencies + lab) must match"
    assert pip == ["-e ."], "Binder installs the series itself with `pip: -e .`"


def _imports(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _notebook_code(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    to_python = TransformerManager().transform_cell   # turns %magics into plain Python
    return "\n".join(to_python("".join(c["source"])) for c in cells if c["cell_type"] == "code")


def _undeclared(modules: set[str], allowed: set[str]) -> set[str]:
    dists = packages_distributions()
    missing = set()
    for module in modules - set(sys.stdlib_module_names) - {"lessons_lib"}:
        providers = {canonicalize_name(d) for d in dists.get(module, [module])}
        if not providers & allowed:
            missing.add(module)
    return missing


def test_every_import_is_declared():
    runtime = set(_requirements(PYPROJECT["dependencies"]))
    everything = runtime | set(_requirements(sum(PYPROJECT["optional-dependencies"].values(), [])))
    lesson_code = [p.read_text() for p in (ROOT / "lessons_lib").glob("*.py")]
    lesson_code += [_notebook_code(p) for p in NOTEBOOKS]
    assert _undeclared(set().union(*map(_imports, lesson_code)), runtime) == set()
    tool_code = [p.read_text() for d in ("tests", "scripts", "benchmarks") for p in (ROOT / d).rglob("*.py")]
    own_scripts = {p.stem for p in (ROOT / "scripts").glob("*.py")}     # scripts import one another
    assert _undeclared(set().union(*map(_imports, tool_code)) - own_scripts, everything) == set()


def test_notebooks_are_numbered_in_order():
    numbers = [int(p.name[:2]) for p in NOTEBOOKS]
    assert numbers == list(range(len(NOTEBOOKS))), [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_was_run_top_to_bottom_without_errors(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    assert [c["execution_count"] for c in code] == list(range(1, len(code) + 1)), \
        "re-run the notebook in a fresh kernel (Restart Kernel and Run All) before committing"
    for cell in code:
        for output in cell["outputs"]:
            assert output["output_type"] != "error", f"stored error in: {''.join(cell['source'])[:80]}"
            text = json.dumps(output.get("text", "")) + json.dumps(output.get("data", {}).get("text/plain", ""))
            assert not re.search(r"/(root|home|tmp|work)/", text), f"machine path in output: {text[:120]}"
    assert path.stat().st_size < 2_000_000


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_follows_the_lesson_template(path):
    cells = json.loads(path.read_text())["cells"]
    title = "".join(cells[0]["source"])
    assert cells[0]["cell_type"] == "markdown" and title.startswith(f"# {path.name[:2]} · ")
    for part in ("**What you will learn**", "**What you need**", "**Time to run**"):
        assert part in title
    setup = [c for c in cells if c["cell_type"] == "code"][0]
    first_setup = [c for c in json.loads(NOTEBOOKS[0].read_text())["cells"] if c["cell_type"] == "code"][0]
    assert setup["source"] == first_setup["source"], "every lesson opens with the same set-up cell"
    headings = [line for c in cells if c["cell_type"] == "markdown" for line in "".join(c["source"]).splitlines()]
    assert "## Summary" in headings and "## Next" in headings
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert "seed_everything(" in code


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci and "make test" in readme and "make lab" in readme
    assert "--nbval-lax" not in (ROOT / "pyproject.toml").read_text() + ci


def _url_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("set_repository_url", ROOT / "scripts" / "set_repository_url.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_repository_url_is_kept_in_one_place():
    """pyproject.toml's address is the one every set-up cell installs from and the badges open."""
    script = _url_script()
    url = PYPROJECT["urls"]["Repository"]
    assert script.repository_url() == url
    stale = [p.name for p, text in script.places().items() if p.read_text() != text]
    assert stale == [], "run python scripts/set_repository_url.py"
    owner_name = url.removeprefix("https://github.com/")
    readme = (ROOT / "README.md").read_text()
    assert f"mybinder.org/v2/gh/{owner_name}/HEAD" in readme
    assert f"colab.research.google.com/github/{owner_name}/blob/main/" in readme
    for path in NOTEBOOKS:
        setup = next(c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
        assert f'"lessons_lib @ git+{url}"' in "".join(setup["source"]), path.name


def test_changing_the_repository_url_reaches_every_place(tmp_path):
    script = _url_script()
    for name in ("README.md", "pyproject.toml"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    (tmp_path / "notebooks").mkdir()
    for path in NOTEBOOKS[:2]:
        (tmp_path / "notebooks" / path.name).write_text(path.read_text())
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(PYPROJECT["urls"]["Repository"], "https://github.com/a-school/fork"))
    wanted = script.places(tmp_path)
    assert "mybinder.org/v2/gh/a-school/fork/HEAD" in wanted[tmp_path / "README.md"]
    assert "colab.research.google.com/github/a-school/fork/blob/main/" in wanted[tmp_path / "README.md"]
    assert all('git+https://github.com/a-school/fork\\"' in text for p, text in wanted.items() if p.suffix == ".ipynb")
    pyproject.write_text(pyproject.read_text().replace("https://github.com/a-school/fork", "https://gitlab.com/x/y"))
    with pytest.raises(ValueError, match="url must look like https://github.com/OWNER/NAME"):
        script.places(tmp_path)


def test_the_checkpoint_ships_with_the_package():
    """Colab installs the package from git without the rest of the repository: the GPT must be in it."""
    from fnmatch import fnmatch

    from lessons_lib.gpt import CHECKPOINT

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["lessons_lib"]
    package_dir = ROOT / "lessons_lib"
    for path in (CHECKPOINT, CHECKPOINT.with_suffix(".json")):
        assert path.is_file() and path.parent.parent == package_dir
        assert any(fnmatch(str(path.relative_to(package_dir)), p) for p in patterns), path.name


def test_the_learner_environment_has_no_teacher_tools():
    """make lab installs the runtime and the lab extra only; nbgrader (menus, Validate button) is
    the teachers' and the tests', in the other environment."""
    extras = PYPROJECT["optional-dependencies"]
    learner = set(_requirements(PYPROJECT["dependencies"] + extras["lab"]))
    assert "nbgrader" not in learner and "nbgrader" in _requirements(extras["teach"])
    assert "nbgrader" in _requirements(extras["test"]), "the suite builds versions and runs an nbgrader course"
    makefile = (ROOT / "Makefile").read_text()
    learner_install = re.search(r"^\$\(STAMP\):.*?^\ttouch", makefile, re.S | re.M)[0]
    installs = re.findall(r"pip install .*", learner_install)
    assert installs[-1].endswith('-e ".[lab]"') and not any("test" in i or "teach" in i for i in installs)
    assert re.search(r"^lab: \$\(STAMP\)$", makefile, re.M) and re.search(r"^teach: \$\(DEV_STAMP\)$", makefile, re.M)
    assert "LEARNER_JUPYTER=$(abspath $(BIN))/jupyter" in makefile, "the browser test must use the learner's lab"


def test_every_learner_entry_point_opens_the_exercise_versions():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"https://(?:colab\.research\.google\.com/github|mybinder\.org/v2/gh)/\S+?\.ipynb", readme)
    assert len(links) == 1 + 1 + len(NOTEBOOKS)                  # two badges, one link per lesson
    assert all("/exercises/" in link for link in links), [link for link in links if "/exercises/" not in link]
    assert {link.rsplit("/", 1)[1] for link in links} == {p.name for p in NOTEBOOKS}
    makefile = (ROOT / "Makefile").read_text()
    lab = re.search(r"^lab: .*?(?=^\S)", makefile, re.S | re.M)[0]
    assert "exercises/*.ipynb" in lab and "test -e" in lab, "make lab copies exercises/, never overwriting"
    assert 'jupyter trust "$$copy"' in lab and "jupyter lab $(LAB_ARGS) $(WORKSPACE)/" in lab
    assert "workspace/" in (ROOT / ".gitignore").read_text().split()
    post_build = (ROOT / "postBuild").read_text()
    assert "jupyter trust exercises/*.ipynb" in post_build and (ROOT / "postBuild").stat().st_mode & 0o111
