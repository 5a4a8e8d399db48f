"""lessons_lib: the small helper library behind the Pruning Masterclass notebooks.

One module per concern, each short enough to read in a sitting:

- ``repro``          -- seeds and thread count, one call at the top of every lesson
- ``validate``       -- the argument checks every public function runs first
- ``sparsity``       -- magnitude, random and N:M masks; sparsity of tensors and models
- ``pruning``        -- masks on a whole model: layer-wise, global, per layer, Wanda-style
- ``measure``        -- output error, accuracy vs sparsity, parameters, bytes, latency
- ``data``, ``models``, ``training`` -- the digits split, the MLP and its training loop
- ``schedules``      -- one-shot, iterative and cubic pruning plans during fine-tuning
- ``structured``     -- neuron scores and physically smaller MLP layers
- ``gpt``, ``tasks`` -- the tiny GPT, its addition task and its checkpoint (in ``checkpoints/``)
- ``gpt_structured`` -- head and FFN-neuron scores and removal for the GPT
- ``plots``          -- mask heatmaps, histograms, accuracy/latency/schedule curves
- ``widgets``        -- interactive explorers (ipywidgets)
- ``checks``         -- exercise checkers with plain-language feedback
- ``assignment``     -- lesson 08's rules, held-out problems and score table

Importing the package has no side effects: nothing is seeded, trained or drawn.
"""

__version__ = "0.1.0"
