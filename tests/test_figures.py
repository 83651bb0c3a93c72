"""hooked_nar.figures: layouts are deterministic and keep nodes apart, every drawing writes a
PNG atomically, and bad input is named before anything is drawn."""

from __future__ import annotations

import numpy as np
import pytest

from hooked_nar.algorithms import run
from hooked_nar.figures import (
    draw_graph_panels,
    draw_prediction_vs_truth,
    draw_trajectory,
    graph_layout,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _path_graph(n: int) -> np.ndarray:
    A = np.zeros((n, n))
    for i in range(n - 1):
        A[i, i + 1] = A[i + 1, i] = 1.0
    return A


def test_layout_is_deterministic_and_separates_nodes():
    A = _path_graph(6)
    A_with_isolated = np.pad(A, ((0, 2), (0, 2)))  # two isolated nodes
    first, again = graph_layout(A_with_isolated, seed=3), graph_layout(A_with_isolated, seed=3)
    np.testing.assert_array_equal(first, again)
    dist = np.linalg.norm(first[:, None] - first[None], axis=-1) + np.eye(8) * 1e9
    assert dist.min() > 0.5  # no two nodes drawn on top of each other
    # isolated nodes sit in a column to the right of the connected component
    assert first[6:, 0].min() > first[:6, 0].max()


def test_trajectory_figure_is_a_png_and_rejects_a_non_node_hint(tmp_path):
    traj = run("bfs", _path_graph(5), source=0)
    out = draw_trajectory(traj, "reach_h", tmp_path / "reach.png")
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in tmp_path.iterdir()] == ["reach.png"]  # no temporary file left
    with pytest.raises(ValueError, match="hint='pi'"):
        draw_trajectory(traj, "pi", tmp_path / "bad.png")  # an output, not a hint


def test_prediction_figure_checks_shapes_and_panels_check_kind(tmp_path):
    A = _path_graph(4)
    truth = np.array([[1, 0, 0, 0], [1, 1, 0, 0]], dtype=float)
    out = draw_prediction_vs_truth(A, truth, truth[::-1], tmp_path / "p.png", "t")
    assert out.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="must both be"):
        draw_prediction_vs_truth(A, truth, truth[:, :3], tmp_path / "q.png", "t")
    with pytest.raises(ValueError, match="kind='heat'"):
        draw_graph_panels(A, truth, tmp_path / "r.png", kind="heat")
    assert not (tmp_path / "q.png").exists() and not (tmp_path / "r.png").exists()
