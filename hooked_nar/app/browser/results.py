"""What the study decided, read from ``results.json`` defensively, by key.

The causal stage's format changes over time (one feature per test, or a group of features, or
a direction); these readers take what is there and leave the rest to the page's "not tested".
"""

from __future__ import annotations

import math
from typing import Any

#: Places in results.json where per-concept baselines may live, tried in order.
BASELINE_KEYS = (
    ("sae", "baselines"),
    ("sae", "concept_baselines"),
    ("causal", "baselines"),
    ("causal", "concept_baselines"),
    ("baselines",),
)


def _get(d: Any, path: tuple[str, ...]) -> Any:
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _scores(d: Any, prefix: str = "") -> dict[str, float]:
    """Every finite float in a nested dict, keyed by its path joined with spaces (integers
    are indices or counts, such as the best neuron's index, not scores)."""
    out: dict[str, float] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_scores(v, f"{prefix} {k}".strip()))
    elif isinstance(d, float) and math.isfinite(d):
        out[prefix or "value"] = round(d, 4)
    return out


def study_baselines(results: dict, concepts: list[str]) -> dict[str, dict[str, float]]:
    """``{concept: {baseline name: value}}`` from the first place of :data:`BASELINE_KEYS`
    that names any of ``concepts``; {} when results.json holds none."""
    for path in BASELINE_KEYS:
        table = _get(results, path)
        if isinstance(table, dict) and any(c in table for c in concepts):
            return {c: _scores(table[c]) for c in concepts if c in table}
    return {}


#: Entries of a baseline table that are not a baseline to beat: the trained model's own
#: probe (a reference from the same activations) and the shuffled-label controls and spreads.
NOT_TO_BEAT = ("probe", "probe control", "control", "sd")


def strongest_baseline(baselines: dict[str, float]) -> float | None:
    """The largest score in ``[0, 1]`` among a concept's baselines, leaving out the entries
    of :data:`NOT_TO_BEAT` (by name, or by a last word "control" / "sd"); None if none."""
    kept = [
        v
        for k, v in baselines.items()
        if k.replace("_", " ") not in NOT_TO_BEAT
        and k.replace("_", " ").split()[-1] not in ("control", "sd")
        and 0.0 <= v <= 1.0
    ]
    return max(kept) if kept else None


def _tests(results: dict) -> list[dict]:
    tests = _get(results, ("causal", "tests"))
    return [t for t in tests if isinstance(t, dict)] if isinstance(tests, list) else []


def _features_of(test: dict) -> list[int]:
    feats: list[int] = []
    for key in ("feature", "features"):
        v = test.get(key)
        feats += [v] if isinstance(v, int) else [x for x in v or [] if isinstance(x, int)]
    unit = test.get("unit")
    if isinstance(unit, dict):
        feats += [x for x in unit.get("features") or [] if isinstance(x, int)]
    return sorted(set(feats))


def _unit_name(test: dict, features: list[int]) -> str:
    unit = test.get("unit")
    if isinstance(unit, dict):
        unit = unit.get("name") or unit.get("kind")
    if isinstance(unit, str):
        return unit
    return "feature" if len(features) == 1 else f"{len(features)} features"


def causal_verdicts(results: dict) -> list[dict]:
    """One ``{"concept", "verdict", "unit", "features"}`` per causal test in results.json."""
    out = []
    for t in _tests(results):
        feats = _features_of(t)
        out.append(
            {
                "concept": str(t.get("concept", "?")),
                "verdict": str(t.get("verdict", "no verdict")),
                "unit": _unit_name(t, feats),
                "features": feats,
            }
        )
    return out


def causal_by_feature(results: dict) -> dict[int, list[dict]]:
    """``{feature: [{"concept", "verdict", "unit"}]}`` over the tests that intervened on it."""
    out: dict[int, list[dict]] = {}
    for v in causal_verdicts(results):
        for f in v["features"]:
            out.setdefault(f, []).append(
                {"concept": v["concept"], "verdict": v["verdict"], "unit": v["unit"]}
            )
    return out
