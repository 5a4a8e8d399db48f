"""lessons_lib: the small helper library behind the Pruning Masterclass notebooks.

Words
-----
The library says each thing one way, and every lesson uses these words:

- **sparsity**: the fraction of a tensor's or a model's weights that are zero (unstructured
  pruning), a float in [0, 1]. ``prune_global(model, 0.9)`` leaves the model at 90% sparsity in
  total, whatever it was before (masks are never undone, so asking for less than the current
  sparsity is refused). Never a count: torch's ``amount`` is a count when it is an int, so our
  functions refuse the int ``1`` rather than guess. Lists of them are ``sparsities``; a
  schedule's end point is ``final_sparsity``.
- **keep** / **n_keep** (structured pruning): ``keep`` is the indices of the units (neurons,
  heads) a layer keeps, ``n_keep`` how many. ``slimming.keep_top(scores, n_keep)`` is the one way
  to turn scores into ``keep``: the highest scores, ties to the lower index, in increasing order.
- **layer names** are the keys everywhere: the names ``model.named_modules()`` gives
  (``"layers.0"``, ``"blocks.1.fc1"``). Scores are ``dict[name, Tensor]`` with one score per
  unit; a GPT's heads are keyed by their attention module (``"blocks.i.attn"``), its FFN neurons
  by the layer that computes them (``"blocks.i.fc1"``).
- **prunable layers**: the one definition of which weights a model-level call considers,
  :func:`pruning.prunable_layers`: the model's own ``prunable_layers()`` if it has one (the
  GPT: its blocks' Linear layers), else every ``nn.Linear``. ``prune_*``, ``layer_sparsities``
  and ``model_sparsity`` all use it.
- ``prune_*`` functions attach masks **in place**; ``slim_*`` functions return a **new**, smaller
  model and leave theirs unchanged; ``*_copy`` functions return a changed copy.
- Three costs, never mixed up, each with one function in ``measure``: parameters **stored**
  (``count_parameters``; zeros count, since a mask stores them), **multiply-adds** per forward
  pass (``multiply_adds``) and measured **latency** (``latency_ms``, ``interleaved_latency_ms``).
  ``count_nonzero`` counts the weights that are not zero, which is what sparsity changes.

Layers
------
Each module imports only from its own layer or the ones above it in this list (a test reads the
imports and checks it):

- util: ``validate`` (argument checks), ``repro`` (seeds, threads), ``progress`` (progress bars),
  ``checkpoint`` (reading a shipped checkpoint after checking its SHA-256)
- core, on torch alone: ``sparsity`` (masks on one tensor: magnitude, random, N:M, Wanda),
  ``pruning`` (masks on a whole model), ``slimming`` (removing units: ``slim_linear``,
  ``keep_top``), ``reconstruction`` (OBS and SparseGPT: masks chosen and the kept weights
  updated from a layer's Hessian), ``measure`` (parameters, multiply-adds, bytes, latency; a leaf that imports only
  ``validate``)
- course material: ``data``, ``models``, ``training`` (the digits MLP and its trained copy),
  ``schedules`` (one-shot, iterative and cubic plans), ``experiments`` (curves, scans and
  comparisons on copies of a model), ``structured`` (MLP neurons), ``gpt``, ``tasks``,
  ``gpt_structured`` (the tiny GPT, its addition task, its heads and FFN neurons), ``cnn`` (a
  residual CNN on the digits, its channel groups and channel slimming)
- teaching: ``plots``, ``widgets`` (explorers that call the functions above and do no maths of
  their own), ``checks`` (exercise checkers; importing it loads no GPT and no scikit-learn),
  ``assignment`` (lesson 10's rules and grader)

Importing the package has no side effects: nothing is seeded, trained or drawn.
"""

__version__ = "0.1.0"
