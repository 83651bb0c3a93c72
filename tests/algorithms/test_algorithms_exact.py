"""Every input, hint and output equals DeepMind's CLRS reference on every reference sample."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hooked_nar.algorithms import ALGORITHMS, SPECS, run
from tests.reference import REFERENCE_DIR, load_samples, source_of


def test_specs_equal_reference():
    reference = json.loads((REFERENCE_DIR / "specs.json").read_text())
    assert {a: {f: list(v) for f, v in fields.items()} for a, fields in SPECS.items()} == reference
    assert set(ALGORITHMS) == set(reference)


def _assert_field_equal(ours: np.ndarray, ref: np.ndarray, ftype: str, where: str) -> None:
    n_ref = np.asarray(ref)
    if n_ref.shape != ours.shape:
        # CLRS squeezes inputs and outputs of 1-node graphs; we keep the node axis.
        assert ours.size == n_ref.size and 1 in ours.shape, f"{where}: shape {ours.shape} vs {n_ref.shape}"
        n_ref = n_ref.reshape(ours.shape)
    if ftype == "scalar":
        np.testing.assert_allclose(ours, n_ref, atol=1e-6, rtol=0, err_msg=where)
    else:
        np.testing.assert_array_equal(ours, n_ref, err_msg=where)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_trajectories_equal_reference(algorithm):
    spec = SPECS[algorithm]
    for i, sample in enumerate(load_samples(algorithm)):
        A = np.atleast_2d(sample["input"]["A"])
        traj = run(algorithm, A, source_of(sample))
        ours = {"input": traj.inputs, "hint": traj.hints, "output": traj.outputs}
        for stage in ("input", "hint", "output"):
            assert set(ours[stage]) == set(sample[stage]), f"{algorithm}[{i}] {stage} fields"
            for name, ref in sample[stage].items():
                _assert_field_equal(ours[stage][name], ref, spec[name].type, f"{algorithm}[{i}] {stage}/{name}")
        assert traj.length == next(iter(sample["hint"].values())).shape[0]
