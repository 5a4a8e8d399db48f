"""A real browser opens the exercise versions in the learner's JupyterLab, as `make lab` sets it up.

It checks what a learner sees before running anything (saved explorers and progress bars drawn as
widgets, no teacher tooling), then runs lessons 01 and 09 with Run All past their untouched
exercises and moves their widgets.

Needs Debian's ``chromium`` (``apt-get install chromium``; ``.ci/run`` installs it) and the
``playwright`` package from the test extra (no browser download). JupyterLab itself comes from the
learner's environment: ``make test`` passes its ``jupyter`` in ``LEARNER_JUPYTER``. On a machine
without Chromium the tests are skipped with a message saying so; under CI (``CI=true``) a missing
browser or a missing ``LEARNER_JUPYTER`` fails them. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
except ImportError:          # skipped (or failed under CI) in _require_browser
    PlaywrightTimeout = TimeoutError

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKEN = "pruning-masterclass-test"
IN_CI = os.environ.get("CI") == "true"
pytestmark = pytest.mark.slow          # a JupyterLab server and a browser: make test, not make test-fast


def _require_browser() -> None:
    missing = []
    if not Path(CHROMIUM).exists():
        missing.append("Chromium (sudo apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -e '.[test]')")
    if missing:
        message = "the real-browser test needs " + " and ".join(missing)
        if IN_CI:
            pytest.fail(message + "; .ci/run installs Chromium, so under CI a missing browser is an error")
        pytest.skip(message + "; install it and run make test again to include this test")


def _learner_jupyter() -> tuple[str, bool]:
    """The ``jupyter`` of the learner's environment, and whether it is that (not this one's)."""
    given = os.environ.get("LEARNER_JUPYTER")
    if given:
        return given, True
    if IN_CI:
        pytest.fail("LEARNER_JUPYTER is not set: run the suite with make test, which builds the learner's .venv")
    return str(Path(sys.executable).with_name("jupyter")), False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The learner's JupyterLab on 127.0.0.1 over a copy of exercises/, trusted as make lab does
    (with its own trust database), so autosave never touches the repository."""
    _require_browser()
    jupyter, _ = _learner_jupyter()
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "exercises", root / "workspace")
    env = dict(os.environ, JUPYTER_DATA_DIR=str(root / "data"))
    subprocess.run([jupyter, "trust", *map(str, sorted((root / "workspace").glob("*.ipynb")))], env=env,
                   check=True, capture_output=True)
    # render every cell (no windowing), so widgets far down the page exist in the DOM
    settings = root / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    port = _free_port()
    command = [jupyter, "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
               f"--ServerApp.token={TOKEN}", f"--ServerApp.root_dir={root / 'workspace'}",
               f"--LabApp.workspaces_dir={root / 'workspaces'}", f"--LabApp.user_settings_dir={root / 'settings'}",
               "--LabApp.news_url=",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    log = (root / "lab.log").open("w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        server.terminate()
        pytest.fail(f"JupyterLab did not start; see {root / 'lab.log'}")
    yield url
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


def _open(page, lab: str, notebook: str):
    """Open ``notebook`` alone and wait for its kernel; return the notebook's element."""
    # ?reset: start from an empty workspace, so only this notebook is open (an earlier test's tab
    # would otherwise be restored next to it)
    page.goto(f"{lab}/lab/tree/{notebook}?reset&token={TOKEN}")
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").first
    panel.wait_for(timeout=120_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
    return panel


def test_unrun_lesson_draws_its_saved_widgets_and_no_teacher_tools(lab, browser):
    """What a learner sees on opening a lesson, before running a cell: the saved explorer and
    finished progress bars drawn as widgets, not their plain text, and no nbgrader menus."""
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    panel = _open(page, lab, "03_fine_tuning_and_schedules.ipynb")
    page.locator(".widget-slider").first.wait_for(timeout=60_000)
    bars = page.locator(".widget-hprogress .progress-bar")
    bars.first.wait_for(state="attached", timeout=60_000)
    bars.first.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "lesson03_unrun_bars.png"))
    page.locator(".widget-slider").first.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "lesson03_unrun_explorer.png"))
    text = panel.inner_text()
    assert "VBox(children=" not in text and "HBox(children=" not in text
    assert "0%|" not in text, "a saved progress bar shows tqdm's first frame as text"
    assert page.locator(".widget-slider").count() >= 3                  # the schedule explorer's sliders
    widths = [bars.nth(i).evaluate("el => el.style.width") for i in range(bars.count())]
    assert widths and all(w == "100%" for w in widths), f"saved training bars should be full: {widths}"
    assert page.locator(".jp-InputArea-prompt", has_text="[*]").count() == 0      # nothing ran
    _, learners = _learner_jupyter()
    if learners:                                   # the learner's environment has no nbgrader
        menus = page.locator(".lm-MenuBar-itemLabel").all_inner_texts()
        assert "Nbgrader" not in menus and "nbgrader" not in " ".join(menus).lower(), menus
        assert page.get_by_text("Validate", exact=True).count() == 0
    page.close()


def _run_all(page, lab: str, notebook: str, done_text: str, timeout_s: int = 240) -> None:
    """Open ``notebook``, choose Run > Run All Cells, and wait until ``done_text`` shows in an output."""
    _open(page, lab, notebook)
    started = page.locator(".jp-InputArea-prompt", has_text="[*]").or_(
        page.locator(".jp-InputArea-prompt", has_text="[1]")).first
    for _ in range(3):
        # the menu, as a learner would; the item carries the command id runmenu:run-all
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator("li[data-command='runmenu:run-all']").first.click()
        try:
            started.wait_for(timeout=20_000)       # a prompt turns [*] or [1]: the run has begun
            break
        except PlaywrightTimeout:
            page.keyboard.press("Escape")          # close the menu if it is still open, and retry
    else:
        pytest.fail(f"Run > Run All Cells did not start {notebook} in 3 tries")
    # wait for the text in an OUTPUT (the same words also stand in the cell's source)
    page.locator(".jp-OutputArea-output", has_text=done_text).first.wait_for(timeout=timeout_s * 1000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=timeout_s * 1000)


def _errors(page) -> int:
    return page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count()


def _not_implemented(page) -> int:
    """Check outputs saying an untouched exercise is not implemented yet (and the run went on)."""
    said = page.locator(".jp-OutputArea-output", has_text="is not implemented yet")
    return page.locator(".jp-CodeCell", has=said).count()


def test_lesson_01_slider_changes_readout_and_picture(lab, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    _run_all(page, lab, "01_magnitude_masks.ipynb", "median update:")
    assert _errors(page) == 0, "a cell shows an error"
    assert _not_implemented(page) == 1, "Run All should pass the untouched magnitude_mask exercise"
    readout = page.locator(".widget-html-content", has_text="relative output error").first
    image = page.locator(".widget-image").first
    handle = page.locator(".widget-slider .noUi-handle").first
    handle.scroll_into_view_if_needed()
    before_text, before_src = readout.inner_text(), image.get_attribute("src")
    page.screenshot(path=str(ARTIFACTS / "lesson01_before.png"))
    box = handle.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] - 120, box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()
    page.wait_for_function("([el, old]) => el.innerText !== old", arg=[readout.element_handle(), before_text],
                           timeout=10_000)
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "lesson01_after.png"))
    assert readout.inner_text() != before_text
    assert image.get_attribute("src") != before_src
    page.close()


def test_lesson_09_head_toggle_changes_readout(lab, browser):
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    _run_all(page, lab, "09_pruning_heads_and_neurons.ipynb", "the slim model is faster", timeout_s=300)
    assert _errors(page) == 0, "a cell shows an error"
    assert _not_implemented(page) == 1, "Run All should pass the untouched remove_heads exercise"
    checkbox = page.locator(".widget-checkbox input").first
    checkbox.scroll_into_view_if_needed()                          # widgets render once in view
    readout = page.locator(".widget-html-content", has_text="exact match").first
    readout.wait_for(timeout=30_000)
    before = readout.inner_text()
    checkbox.click()                                               # switch off layer 0, head 0
    page.wait_for_function("([el, old]) => el.innerText !== old", arg=[readout.element_handle(), before],
                           timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "lesson09_head_off.png"))
    assert "heads [3, " in readout.inner_text() and readout.inner_text() != before
    page.close()
