"""Measure what the README claims: per-notebook run time and peak kernel memory, widget latency.

    python benchmarks/run_all.py          # writes benchmarks/results.md and the README table

Each notebook runs headless in its own process (nbclient, a fresh kernel), so the peak resident
memory of that process's children is the kernel's. Widget latency is the median time of a
slider update, the way a learner triggers it, over several positions.
"""

from __future__ import annotations

import json
import os
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


def _median_update_ms(slider, values) -> tuple[int, int]:
    times = []
    for value in values:
        start = time.perf_counter()
        slider.value = value
        times.append(1000 * (time.perf_counter() - start))
    return round(statistics.median(times)), round(max(times))


def widget_latency() -> list[dict]:
    """Median and slowest milliseconds per slider update of every explorer in the lessons."""
    import matplotlib

    matplotlib.use("Agg")
    import torch

    from lessons_lib.data import digits_split
    from lessons_lib.models import MLP
    from lessons_lib.repro import seed_everything
    from lessons_lib.training import train
    from lessons_lib.widgets import (
        latency_explorer,
        layer_sparsity_explorer,
        neuron_explorer,
        schedule_explorer,
        sparsity_explorer,
    )

    seed_everything(0, threads=1)
    fractions = [round(0.05 * (i + 1), 2) for i in range(19)]
    rows = []
    slider = sparsity_explorer(torch.nn.Linear(100, 50), torch.randn(1024, 100)).children[0]
    rows.append(("01 sparsity_explorer (Linear 100x50, 1,024 inputs)", *_median_update_ms(slider, fractions)))
    data = digits_split()
    model = MLP()
    train(model, data, 30, progress=False)
    slider = layer_sparsity_explorer(model, data.x_val, data.y_val).children[1]
    rows.append(("02 layer_sparsity_explorer (MLP, 270 validation images)", *_median_update_ms(slider, fractions)))
    slider = schedule_explorer(epochs=30).children[0]
    rows.append(("03 schedule_explorer (30 epochs)", *_median_update_ms(slider, [f * 0.99 for f in fractions])))
    slider = neuron_explorer(model, data.x_val, data.y_val).children[0]
    widths = list(range(10, 250, 13))
    rows.append(("04 neuron_explorer (MLP, slim rebuilt + timed)", *_median_update_ms(slider, widths)))
    sparsities = [0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99]           # the curve shape lesson 05 measures
    curves = {"CSR": [2.0 * (1 - s) + 0.05 for s in sparsities], "slim": [1.0 * (1 - s) + 0.02 for s in sparsities]}
    slider = latency_explorer(sparsities, curves, dense_ms=1.0).children[0]
    rows.append(("05 latency_explorer (measured curves, nothing re-timed)",
                 *_median_update_ms(slider, [*range(1, len(sparsities)), *range(len(sparsities) - 2, -1, -1)])))
    from lessons_lib.cnn import load_trained_cnn
    from lessons_lib.widgets import cnn_explorer

    box = cnn_explorer(load_trained_cnn(), data.x_test, data.y_test)
    inner_slider = box.children[1]                                    # blocks.0's inner channels
    rows.append(("06 cnn_explorer (360 test images, slim rebuilt + timed)",
                 *_median_update_ms(inner_slider, list(range(2, 33, 2)))))
    from lessons_lib.gpt import CHECKPOINT, load_checkpoint
    from lessons_lib.gpt_structured import ffn_neuron_scores
    from lessons_lib.pruning import input_norms, prunable_layers
    from lessons_lib.tasks import addition_task
    from lessons_lib.widgets import head_explorer, transformer_sparsity_explorer

    gpt = load_checkpoint(CHECKPOINT)
    task = addition_task(3)
    layers = prunable_layers(gpt)
    norms = input_norms(gpt, task.x_train[:128], layers)
    slider = transformer_sparsity_explorer(gpt, layers, task.x_test[:1000], task.y_test[:1000], norms).children[1]
    rows.append(("07 transformer_sparsity_explorer (1,000 problems)", *_median_update_ms(slider, fractions[:18])))
    ffn_slider = head_explorer(gpt, task.x_val[:500], task.y_val[:500],
                               ffn_neuron_scores(gpt, task.x_train[:256])).children[1]
    rows.append(("09 head_explorer (500 problems, slim rebuilt + timed)",
                 *_median_update_ms(ffn_slider, [round(0.05 * i, 2) for i in range(1, 20)])))
    return [{"widget": name, "median_ms": median, "max_ms": worst} for name, median, worst in rows]


# The budget: every notebook within 40 s and 1 GB, the series within 6 minutes, explorers within
# 60 ms (MLP lessons), 100 ms (the CNN, issue 16) or 300 ms (transformer lessons) per update,
# median -- on a CPU whose PyTorch uses AVX-512 kernels. A CPU limited to AVX2 runs the same lessons
# about 1.6x slower; there the targets are 60 s and 100 ms, so the faster targets leave that margin
# for slower machines.
FAST_TARGETS = {"notebook_s": 40, "mlp_widget_ms": 60}
SLOW_TARGETS = {"notebook_s": 60, "mlp_widget_ms": 100}
NOTEBOOK_MB, SERIES_S, TRANSFORMER_WIDGET_MS, CNN_WIDGET_MS = 1024, 360, 300, 100


def targets() -> dict[str, int]:
    """The targets for this machine's CPU capability (see FAST_TARGETS)."""
    import torch

    return FAST_TARGETS if "AVX512" in torch.backends.cpu.get_cpu_capability() else SLOW_TARGETS


def _yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _machine() -> str:
    import torch

    cpu = platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    capability = torch.backends.cpu.get_cpu_capability()
    return (f"{platform.system()}, {os.cpu_count()} cores ({cpu}, PyTorch CPU capability {capability}), "
            f"Python {platform.python_version()}, torch {torch.__version__}")


def table(notebooks: list[dict], widgets: list[dict]) -> str:
    notebook_s, mlp_widget_ms = targets()["notebook_s"], targets()["mlp_widget_ms"]
    lines = [f"| notebook | run time (s) | kernel peak memory (MB) | within {notebook_s} s and {NOTEBOOK_MB:,} MB |",
             "|---|---|---|---|"]
    lines += [f"| {r['notebook']} | {r['wall_s']} | {r['peak_mb']} | "
              f"{_yes(r['wall_s'] <= notebook_s and r['peak_mb'] <= NOTEBOOK_MB)} |" for r in notebooks]
    total = round(sum(r["wall_s"] for r in notebooks), 1)
    lines.append(f"| **all** | **{total}** | | within {SERIES_S} s: {_yes(total <= SERIES_S)} |")
    lines += ["", "| widget | median update (ms) | slowest (ms) | target (ms) | met |", "|---|---|---|---|---|"]
    for w in widgets:
        target = {"06": CNN_WIDGET_MS, "07": TRANSFORMER_WIDGET_MS, "09": TRANSFORMER_WIDGET_MS}.get(
            w["widget"][:2], mlp_widget_ms)
        met = _yes(w["median_ms"] <= target)
        lines.append(f"| {w['widget']} | {w['median_ms']} | {w['max_ms']} | {target} | {met} |")
    lines += ["", f"_Measured {date.today().isoformat()} on {_machine()}, headless (nbclient), "
              "one PyTorch thread as the lessons set, by `benchmarks/run_all.py`._"]
    return "\n".join(lines)


def main() -> None:
    notebooks = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        out = subprocess.run([sys.executable, __file__, "--one", str(path)],
                             check=True, capture_output=True, text=True)
        notebooks.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(notebooks[-1])
    widgets = widget_latency()
    print(widgets)
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
