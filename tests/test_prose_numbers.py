"""Every number a lesson's prose quotes is shown by that lesson: printed by a cell whose output is
compared (nbval), or written in its code. A number printed only by a cell marked
NBVAL_IGNORE_OUTPUT changes between machines, so prose must not quote it either.

"Numbers" are what looks measured: decimals (97.2), percentages (90%), multipliers (2.3x) and
counts with a thousands separator (24,704). Plain small integers (5 seeds, 2 heads), code spans,
headings, lesson numbers and the years of citations are not checked. Figures quoted from the
literature or from benchmarks/ go in ALLOWED, with where they come from.
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
NUMBER = re.compile(r"(?<![\w.`])(\d{1,3}(?:,\d{3})+|\d+\.\d+|\d+)(\s?%|x\b|×)?")
CITATION = re.compile(r"\(?[A-Z][a-zA-Z&. ,]+(?:et al\.)?,? (?:19|20)\d\d\)?")

# notebook prefix -> {number as quoted: where it comes from}
ALLOWED = {
    "00": {"3.10": "the oldest Python the series supports (pyproject.toml requires-python)",
           "40%": "lesson 10's parameter budget, lessons_lib.assignment.BUDGET, printed by lesson 10"},
    "02": {"95.0%": "benchmarks/results/pruning.md, layer-wise one-shot + 30 epochs at 95%, 5 seeds",
           "64.6%": "benchmarks/results/pruning.md, layer-wise one-shot + 30 epochs at 98%, 5 seeds",
           "88.4%": "benchmarks/results/pruning.md, global one-shot + 30 epochs at 95%, 5 seeds",
           "18.3%": "benchmarks/results/pruning.md, global one-shot + 30 epochs at 98%, 5 seeds"},
    "09": {"96.3%": "benchmarks/results/transformer.md, one-shot, 1,000 steps, 3 seeds",
           "94.4%": "benchmarks/results/transformer.md, iterative (2 steps), 1,000 steps, 3 seeds",
           "97.1%": "benchmarks/results/transformer.md, answers only, batch 256, 1,000 steps, 3 seeds",
           "98.1%": "benchmarks/results/transformer.md, answers only, batch 512, 1,000 steps, 3 seeds",
           "98.8%": "benchmarks/results/transformer.md, logits T = 4, alpha = 0.9, batch 128, 3 seeds",
           "98.9%": "benchmarks/results/transformer.md, the same plus hidden states, 3 seeds",
           "99.2%": "benchmarks/results/transformer.md, logits T = 4, alpha = 0.9, batch 256, 3 seeds",
           "99%": "issue 15's bar: within 1 point of the dense model's 100%"},
    "10": {"2,000": "the grader's held-out problems per draw, lessons_lib.assignment, printed in its table"},
}


def _cells(path: Path) -> tuple[list[str], str, str]:
    """(markdown cells, code + compared outputs, outputs nbval ignores)."""
    markdown, shown, ignored = [], [], []
    for cell in json.loads(path.read_text())["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            markdown.append(source)
            continue
        if cell["cell_type"] != "code":
            continue
        shown.append(source)
        outputs = ["".join(o["text"]) for o in cell.get("outputs", []) if "text" in o]
        outputs += ["".join(v) for o in cell.get("outputs", []) for k, v in o.get("data", {}).items()
                    if k.startswith("text/")]
        (ignored if "NBVAL_IGNORE_OUTPUT" in source else shown).extend(outputs)
    return markdown, "\n".join(shown), "\n".join(ignored)


def _forms(number: str, unit: str) -> set[str]:
    """How a cell may show the number: as quoted, without separators, a percentage as a fraction."""
    forms = {number + unit, number, number.replace(",", "")}
    if unit == "%":
        fraction = float(number.replace(",", "")) / 100
        forms |= {repr(round(fraction, 6)), f"{fraction:g}"}
    return forms


def quoted_numbers(markdown: str) -> list[tuple[str, str, str]]:
    """(number, unit, context) for each measured-looking number in one markdown cell."""
    text = re.sub(r"`[^`]*`", " ", markdown)                          # code spans are code
    text = re.sub(r"^#+ .*$", " ", text, flags=re.MULTILINE)           # headings
    text = CITATION.sub(" ", text)
    found = []
    for match in NUMBER.finditer(text):
        number, unit = match.group(1), (match.group(2) or "").strip()
        if unit or "," in number or "." in number:
            found.append((number, unit, text[max(0, match.start() - 50):match.end() + 20].replace("\n", " ")))
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_number_in_the_prose_is_shown_by_the_lesson(path):
    markdown, shown, ignored = _cells(path)
    allowed = ALLOWED.get(path.name[:2], {})
    problems = []
    for cell in markdown:
        for number, unit, context in quoted_numbers(cell):
            if number + unit in allowed or any(form in shown for form in _forms(number, unit)):
                continue
            where = ("only in an NBVAL_IGNORE_OUTPUT cell's output, which changes between machines"
                     if any(form in ignored for form in _forms(number, unit)) else "in no output or code")
            problems.append(f"{number}{unit} is {where}: ...{context}...")
    assert not problems, f"{path.name} quotes numbers it does not show:\n" + "\n".join(problems)


def test_the_check_finds_a_number_no_cell_shows(tmp_path):
    """The check can fail: a made-up figure in the prose is reported, a printed one is not."""
    notebook = {"cells": [
        {"cell_type": "markdown", "source": ["It stores 8,320 fewer and reaches 97.2% (`amount=0.3`, 2023)."]},
        {"cell_type": "code", "source": ["print(f'{0.972:.1%}')"],
         "outputs": [{"output_type": "stream", "text": ["97.2%\n"]}]},
    ]}
    path = tmp_path / "99_made_up.ipynb"
    path.write_text(json.dumps(notebook))
    with pytest.raises(AssertionError, match=r"8,320 is in no output or code") as info:
        test_every_number_in_the_prose_is_shown_by_the_lesson(path)
    assert "97.2%" not in str(info.value)
