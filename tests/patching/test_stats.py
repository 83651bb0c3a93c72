"""patching.stats: intervals, paired differences, rank p-values and Holm, against references."""

from __future__ import annotations

import math

import pytest
import torch

from patching.stats import (
    bootstrap_ci,
    holm,
    null_size_for,
    paired_difference,
    rank_p_value,
)


def test_bootstrap_ci_contains_the_mean_narrows_with_more_graphs_and_ignores_nan():
    g = torch.Generator().manual_seed(0)
    for n in (5, 40, 400):
        x = torch.randn(n, generator=g) + 2.0
        lo, hi = bootstrap_ci(x, seed=0)
        assert lo <= float(x.mean()) <= hi
    wide = bootstrap_ci(torch.randn(10, generator=g))
    narrow = bootstrap_ci(torch.randn(1000, generator=g))
    assert narrow[1] - narrow[0] < wide[1] - wide[0]
    with_nan = torch.tensor([1.0, 2.0, float("nan"), 3.0])
    assert bootstrap_ci(with_nan, seed=0) == bootstrap_ci(torch.tensor([1.0, 2.0, 3.0]), seed=0)
    assert all(math.isnan(v) for v in bootstrap_ci(torch.tensor([float("nan")])))
    x = torch.randn(50, generator=g)
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3) != bootstrap_ci(x, seed=4)



def test_bootstrap_has_one_home_in_the_core_and_gives_the_earlier_numbers():
    """patching.stats builds on hooked_nar.stats (the core may not import patching); the
    interval equals the formula evaluate.bootstrap_interval and patching.stats each wrote."""
    from hooked_nar import stats as core

    assert bootstrap_ci is core.bootstrap_ci
    x = torch.rand(37, generator=torch.Generator().manual_seed(2))
    gen = torch.Generator().manual_seed(5)
    means = x.double()[torch.randint(37, (1000, 37), generator=gen)].mean(1)
    earlier = (float(means.quantile(0.025)), float(means.quantile(0.975)))
    assert bootstrap_ci(x, seed=5) == pytest.approx(earlier, abs=1e-12)
    with pytest.raises(ValueError, match="num_resamples"):
        core.resample_graphs(5, num_resamples=0)
    with pytest.raises(ValueError, match="level"):
        core.percentile_interval(means, level=1.0)

def test_paired_difference_counts_the_spread_across_null_units():
    g = torch.Generator().manual_seed(1)
    G = 64
    effect = torch.randn(G, generator=g) + 1.0
    same_nulls = torch.zeros(32, G)  # every null unit identical: only graph spread
    spread_nulls = torch.randn(32, 1, generator=g).expand(32, G) * 2.0  # units differ
    a = paired_difference(effect, same_nulls, seed=0)
    b = paired_difference(effect, spread_nulls - spread_nulls.mean(), seed=0)
    assert a.mean == pytest.approx(float(effect.double().mean()))
    assert a.ci[0] < a.mean < a.ci[1]
    assert (b.ci[1] - b.ci[0]) > 1.5 * (a.ci[1] - a.ci[0])  # unit spread widens it
    assert len(a.per_graph) == G
    # a graph with a NaN (effect or any null unit) is dropped from both
    e2 = effect.clone()
    e2[0] = float("nan")
    assert len(paired_difference(e2, same_nulls).per_graph) == G - 1


def test_rank_p_value_is_exact_and_holm_matches_the_reference():
    null = torch.arange(99, dtype=torch.float64)  # 0..98
    assert rank_p_value(1000.0, null) == 1 / 100  # beats every null unit
    assert rank_p_value(-1.0, null) == 1.0
    assert rank_p_value(49.0, null) == (1 + 50) / 100
    assert rank_p_value(-1.0, null, alternative="less") == 1 / 100
    assert math.isnan(rank_p_value(float("nan"), null))
    # a null unit drawn from the null itself has a uniform p-value
    g = torch.Generator().manual_seed(2)
    ps = []
    for _ in range(400):
        z = torch.randn(40, generator=g)
        ps.append(rank_p_value(float(z[0]), z[1:]))
    assert abs(sum(p <= 0.1 for p in ps) / 400 - 0.1) < 0.05
    # Holm against a hand computation: sorted 0.01, 0.03, 0.04 of m = 3
    assert holm([0.01, 0.04, 0.03, float("nan")])[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(holm([0.01, float("nan")])[1])
    assert holm([0.5, 0.9]) == [1.0, 1.0]  # adjusted values never decrease down the order
    assert holm([0.001, 0.9]) == pytest.approx([0.002, 0.9])
    # K null units reach Holm at alpha for m comparisons
    for m in (1, 5, 8, 20):
        K = null_size_for(m)
        assert m / (K + 1) <= 0.05 / 1.25 + 1e-12 and m / K > 0.05 / 1.25
