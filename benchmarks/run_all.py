"""Measure what the README claims: per-notebook run time and peak kernel memory, widget latency.

    python benchmarks/run_all.py          # writes benchmarks/results.md and the README table

Each notebook runs headless in its own process (nbclient, a fresh kernel), so the peak resident
memory of that process's children is the kernel's. Widget latency is the median time of a
slider update, the way a learner triggers it, over several positions.
"""

from __future__ import annotations

import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results.md"
README = ROOT / "README.md"


def run_one_notebook(path: Path) -> dict:
    """Execute ``path`` in a fresh kernel; return wall seconds and the kernel's peak RSS in MB."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    wall = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss   # KB on Linux
    peak_mb = peak_kb / 1024 if sys.platform != "darwin" else peak_kb / 2**20
    return {"notebook": path.name, "wall_s": round(wall, 1), "peak_mb": round(peak_mb)}


def widget_latency(updates: int = 19) -> dict:
    """Median and max milliseconds per update of lesson 01's sparsity explorer."""
    import matplotlib

    matplotlib.use("Agg")
    import torch

    from lessons_lib.repro import seed_everything
    from lessons_lib.widgets import sparsity_explorer

    seed_everything(0, threads=1)
    slider = sparsity_explorer(torch.nn.Linear(100, 50), torch.randn(1024, 100)).children[0]
    times = []
    for i in range(updates):
        start = time.perf_counter()
        slider.value = round(0.05 * (i + 1), 2)
        times.append(1000 * (time.perf_counter() - start))
    return {"widget": "01 sparsity_explorer (Linear 100x50, 1,024 inputs)",
            "median_ms": round(statistics.median(times)), "max_ms": round(max(times))}


def table(notebooks: list[dict], widgets: list[dict]) -> str:
    lines = ["| notebook | run time (s) | kernel peak memory (MB) |", "|---|---|---|"]
    lines += [f"| {r['notebook']} | {r['wall_s']} | {r['peak_mb']} |" for r in notebooks]
    lines.append(f"| **all** | **{round(sum(r['wall_s'] for r in notebooks), 1)}** | |")
    lines += ["", "| widget | median update (ms) | slowest (ms) |", "|---|---|---|"]
    lines += [f"| {w['widget']} | {w['median_ms']} | {w['max_ms']} |" for w in widgets]
    machine = f"{platform.system()} {platform.machine()}, Python {platform.python_version()}"
    lines += ["", f"_Measured {date.today().isoformat()} on {machine} by `benchmarks/run_all.py`._"]
    return "\n".join(lines)


def main() -> None:
    notebooks = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        out = subprocess.run([sys.executable, __file__, "--one", str(path)],
                             check=True, capture_output=True, text=True)
        notebooks.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(notebooks[-1])
    widgets = [widget_latency()]
    print(widgets[-1])
    text = table(notebooks, widgets)
    RESULTS.write_text("# Benchmark results\n\n" + text + "\n")
    readme = README.read_text()
    head, rest = readme.split("<!-- benchmarks:start -->")
    _, tail = rest.split("<!-- benchmarks:end -->")
    README.write_text(f"{head}<!-- benchmarks:start -->\n{text}\n<!-- benchmarks:end -->{tail}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(run_one_notebook(Path(sys.argv[2]))))
    else:
        main()
