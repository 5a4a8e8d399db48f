"""lessons_lib: the small helper library behind the Pruning Masterclass notebooks.

One module per concern, each short enough to read in a sitting:

- ``repro``    -- seeds and thread count, one call at the top of every lesson
- ``sparsity`` -- magnitude and random masks, sparsity of tensors, layers and models
- ``measure``  -- how much a mask changes a layer's output
- ``plots``    -- mask heatmaps, weight histograms, error-vs-sparsity curves
- ``widgets``  -- interactive explorers (ipywidgets)
- ``checks``   -- exercise checkers with plain-language feedback

Importing the package has no side effects: nothing is seeded, trained or drawn.
"""

__version__ = "0.1.0"
