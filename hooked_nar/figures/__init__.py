"""Figures of graphs: coloured by per-node values, one panel per step (matplotlib Agg +
networkx layouts).

- :func:`draw_graph_panels` (:mod:`~hooked_nar.figures.graph_panels`), the core: one graph,
  the same layout in every panel, nodes coloured by any per-(panel, node) values (a hint, a
  prediction, an SAE feature activation), optional pointer arrows, a source node drawn as a
  square and red outlines on flagged nodes;
- :func:`draw_trajectory` and :func:`draw_prediction_vs_truth`
  (:mod:`~hooked_nar.figures.trajectories`): thin wrappers of it;
- :func:`graph_layout` (:mod:`~hooked_nar.figures.layout`): node positions to reuse across
  figures;
- :func:`save_figure` and :func:`pyplot` (:mod:`~hooked_nar.figures.backend`): what every PNG
  of the project goes through.

>>> from hooked_nar.algorithms import run
>>> traj = run("bfs", A, source=0)
>>> draw_trajectory(traj, "reach_h", "bfs_reach.png")
>>> draw_graph_panels(A, acts[:, :, 17], "feature17.png", kind="scalar",
...                   value_label="feature 17", cmap="magma")   # acts [S, n, d_sae]

Every figure is written atomically (temporary file + ``os.replace``); matplotlib is imported
only when a function runs and always with the Agg backend.
"""

from hooked_nar.figures.backend import pyplot, save_figure
from hooked_nar.figures.graph_panels import KINDS, draw_graph_panels
from hooked_nar.figures.layout import graph_layout
from hooked_nar.figures.trajectories import draw_prediction_vs_truth, draw_trajectory

__all__ = [
    "KINDS",
    "draw_graph_panels",
    "draw_prediction_vs_truth",
    "draw_trajectory",
    "graph_layout",
    "pyplot",
    "save_figure",
]
