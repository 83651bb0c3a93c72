"""The algorithm registry is the one place for each algorithm's facts: every record is
complete and sound, and the per-algorithm tables elsewhere are views of the records."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from hooked_nar import algorithms
from hooked_nar.algorithms import (
    ALGORITHMS,
    CATEGORIES,
    SPECS,
    GraphConvention,
    registered_algorithms,
    run,
)
from hooked_nar.app.study.context import PREDICTION_HINTS, TRAJECTORY_HINTS
from hooked_nar.concept_labels import CLASS_NAMES, CONCEPTS, concept_labels
from hooked_nar.data import collate, sample_graph, trajectory_to_data
from hooked_nar.data.generators import GRAPH_CONVENTIONS
from hooked_nar.evaluate import TRIPLET_GMPNN
from hooked_nar.model.fields import DENSE_POINTER_ALGORITHMS, algorithm_fields

RECORDS = registered_algorithms()


def test_every_listed_algorithm_is_registered():
    assert set(RECORDS) == set(ALGORITHMS)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_record_is_complete(name):
    rec = RECORDS[name]
    assert rec.name == name and callable(rec.trace)
    assert isinstance(rec.graph, GraphConvention)
    assert all(isinstance(flag, bool) for flag in rec.graph)
    if rec.graph.acyclic:  # a DAG is directed and has no self-loops
        assert rec.graph.directed and not rec.graph.self_loops
    assert isinstance(rec.dense_pointers, bool) and isinstance(rec.negative_weights, bool)
    assert rec.triplet_gmpnn is None or 0.0 < rec.triplet_gmpnn <= 1.0
    node_hints = {
        k: fs for k, fs in SPECS[name].items() if fs.stage == "hint" and fs.location == "node"
    }
    if rec.trajectory_hint is not None:
        assert rec.trajectory_hint in node_hints
    if rec.prediction_hint is not None:
        hint, cls = rec.prediction_hint
        assert hint in node_hints
        if node_hints[hint].type == "categorical":
            classes = CLASS_NAMES.get((name, hint), CLASS_NAMES.get(("*", hint)))
            assert classes is not None and len(classes) == CATEGORIES[name][hint]
            assert cls in classes
        else:
            assert cls is None


@pytest.mark.parametrize("name", ALGORITHMS)
def test_dense_pointers_flag_matches_the_traces(name):
    """An algorithm is marked dense exactly when its node pointers leave the graph's edges
    (either direction, or a self-pointer) on sampled graphs."""
    rng = np.random.default_rng(0)
    n = 12
    off_edge = 0
    for _ in range(20):
        A, s = sample_graph(name, n, rng=rng)
        traj = run(name, A, s)
        linked = (A != 0) | (A != 0).T | np.eye(n, dtype=bool)
        for fields in (traj.hints, traj.outputs):
            for key, x in fields.items():
                fs = SPECS[name][key]
                if fs.type == "pointer" and fs.location == "node":
                    rows = np.asarray(x).astype(np.int64).reshape(-1, n)
                    off_edge += int((~linked[rows, np.arange(n)]).sum())
    assert (off_edge > 0) == RECORDS[name].dense_pointers


def test_derived_tables_equal_the_records():
    assert GRAPH_CONVENTIONS == {name: RECORDS[name].graph for name in ALGORITHMS}
    assert list(GRAPH_CONVENTIONS) == list(ALGORITHMS)
    assert DENSE_POINTER_ALGORITHMS == {n for n, r in RECORDS.items() if r.dense_pointers}
    assert TRIPLET_GMPNN == {
        n: r.triplet_gmpnn for n, r in RECORDS.items() if r.triplet_gmpnn is not None
    }
    assert TRAJECTORY_HINTS == {
        n: r.trajectory_hint for n, r in RECORDS.items() if r.trajectory_hint is not None
    }
    assert PREDICTION_HINTS == {
        n: r.prediction_hint for n, r in RECORDS.items() if r.prediction_hint is not None
    }


def test_shipped_checkpoint_algorithms_declare_their_study_hints():
    """The four shipped algorithms name their trajectory and prediction hints in the record."""
    for name in ("bfs", "dfs", "dijkstra", "mst_prim"):
        assert RECORDS[name].trajectory_hint is not None
        assert RECORDS[name].prediction_hint is not None
        assert RECORDS[name].triplet_gmpnn is not None


def test_adding_an_algorithm_needs_its_spec_and_its_registered_implementation_only():
    """What adding an algorithm takes: its CLRS spec (``specs.json``) and a trace function
    with its ``@register(...)`` record in a module of ``hooked_nar/algorithms/`` (imported
    because it is there). Everything else is derived from the record: the list of names, the
    graph conventions, the concept labels, the model's fields and the command line's choices."""
    package = Path(algorithms.__file__).parent
    registering = {
        f"hooked_nar.algorithms.{p.stem}"
        for p in package.glob("*.py")
        if re.search(r"^@register\(", p.read_text(), re.MULTILINE)
    }
    assert registering == {rec.trace.__module__ for rec in RECORDS.values()}
    assert ALGORITHMS == tuple(RECORDS)
    for name, rec in RECORDS.items():
        assert name in SPECS and GRAPH_CONVENTIONS[name] is rec.graph
        assert CONCEPTS[name], f"{name} has no concept labels"
        assert algorithm_fields(name, "input") and algorithm_fields(name, "output")
        data = trajectory_to_data(run(name, *sample_graph(name, 5, rng=np.random.default_rng(0))))
        labels = concept_labels(collate([data]))
        assert set(labels) == {*CONCEPTS[name], "step_mask"}
