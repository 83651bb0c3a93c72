"""Guards of normalised effects: near-zero patching gaps, and accuracy recovered with its
bootstrap interval over graphs ("within noise of 1")."""

from __future__ import annotations

import math

import torch

from patching.activation import normalised_effect, usable_gap
from sae.evaluate import recovered_ci, recovered_text


def test_a_near_zero_gap_cannot_dominate_the_normalised_effects():
    clean = torch.tensor([2.0, 3.0, 1.5, 4.0, 5.0 + 1e-6])
    corrupt = torch.tensor([0.0, 1.0, 0.5, 1.0, 5.0])  # graph 4: gap 1e-6, float32 noise
    patched = torch.tensor([1.0, 2.0, 1.0, 2.5, 5.0 + 1.3e-6])
    eff = normalised_effect(patched, clean, corrupt)
    assert torch.allclose(eff[:4], torch.tensor([0.5, 0.5, 0.5, 0.5], dtype=torch.float64))
    assert math.isnan(eff[4])  # would be 1.3 with an absolute 1e-6 guard
    # relative to the run: a gap of 1% of the median gap is left out, 10% is kept
    gaps = torch.tensor([1.0, 1.0, 1.0, 0.01, 0.1])
    assert usable_gap(gaps, torch.zeros(5)).tolist() == [True, True, True, False, True]
    # per-node columns follow their graph
    graph = torch.tensor([0, 0, 4])
    per_node = normalised_effect(torch.tensor([1.0, 2.0, 5.0]), clean, corrupt, graph)
    assert per_node[:2].tolist() == [0.5, 1.0] and math.isnan(per_node[2])


def test_accuracy_recovered_has_an_interval_and_reads_within_noise_of_one():
    g = torch.Generator().manual_seed(0)
    G = 64
    clean = torch.ones(G, dtype=torch.float64)
    ablated = torch.rand(G, generator=g, dtype=torch.float64) * 0.5
    sae = (clean - 0.02 * torch.rand(G, generator=g, dtype=torch.float64)).clamp(max=1)
    sae[:3] = 1.0
    lo, hi = recovered_ci(sae, clean, ablated)
    point = float((sae.mean() - ablated.mean()) / (clean.mean() - ablated.mean()))
    assert lo <= point <= hi and hi - lo < 0.05
    assert recovered_ci(sae, clean, ablated) == (lo, hi)  # seeded
    assert recovered_text(1.006, (0.99, 1.02)) == "1.006 [0.990, 1.020] (within noise of 1)"
    assert recovered_text(1.006, (1.001, 1.02)) == "1.006 [1.001, 1.020]"
    assert recovered_text(0.95, (0.93, 0.97)) == "0.950 [0.930, 0.970]"
    assert recovered_text(float("nan")) == "-"
    # no gap between clean and ablated: no interval
    assert all(math.isnan(x) for x in recovered_ci(clean, clean, clean))
