"""What each attribution path of ``patching.circuits.scoring`` buys, on shipped checkpoints.

    python examples/circuit_attribution_paths.py                       # bfs bellman_ford dijkstra
    python examples/circuit_attribution_paths.py --algorithm dijkstra --ig-steps 16

On the scoring pairs of ``hooked-nar circuit`` (same seed, graph size and counterfactual
edit), tied components, counterfactual ablation: Spearman of EAP and EAP-IG with exact
patching over the components whose exact effect is above ``--threshold`` of the largest
(exact zeros excluded), with everything on, then with one path at a time switched off:
gradients through the re-encoded hints (``hint_gradients``), message units read at their
aggregate (``via_aggregate``), the tied hidden carry cut (``cut_carry``); per site beside it.
A markdown table on stdout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from scipy.stats import spearmanr

# run from a checkout without (re)installing: the repository root comes first on the path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hooked_nar.data.loader import collate  # noqa: E402
from hooked_nar.model import HookedNAR  # noqa: E402
from patching.circuits.ablation import AblationRuns  # noqa: E402
from patching.circuits.components import Components  # noqa: E402
from patching.circuits.discovery import CircuitOptions, counterfactual_pairs  # noqa: E402
from patching.circuits.scoring import (  # noqa: E402
    eap_ig_scores,
    eap_scores,
    exact_scores,
    spearman_agreement,
)
from patching.metrics import pointer_logit_diff  # noqa: E402

VARIANTS = {
    "all paths": {},
    "no hint gradients": {"hint_gradients": False},
    "messages at the messages": {"via_aggregate": False},
    "no carry cut": {"cut_carry": False},
}


def _runs(model, pairs, hint_gradients: bool) -> AblationRuns:
    clean, corrupted = [cf.clean for cf in pairs], [cf.corrupted for cf in pairs]
    metric = pointer_logit_diff(collate(clean), collate(corrupted), "pi")
    return AblationRuns(
        model,
        clean,
        {"logit_diff": metric},
        "counterfactual",
        corrupted,
        hint_gradients=hint_gradients,
    )


def _per_site(scores, exact, comps, threshold: float) -> str:
    y = exact.mean()
    parts = []
    for site, sl in comps.site_slices().items():
        keep = torch.zeros(len(comps), dtype=torch.bool)
        keep[sl] = True
        keep &= (y.abs() > threshold * y.abs().max()) & (y != 0)
        rho = spearmanr(scores.mean()[keep], y[keep]).statistic if keep.sum() > 2 else float("nan")
        parts.append(f"{site.removeprefix('hook_')} {rho:.2f}")
    return ", ".join(parts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algorithm", nargs="+", default=["bfs", "bellman_ford", "dijkstra"])
    p.add_argument("--ig-steps", type=int, default=8)
    p.add_argument("--threshold", type=float, default=0.01)
    args = p.parse_args()
    torch.set_num_threads(1)
    print("| algorithm | variant | EAP | EAP-IG | n | EAP-IG per site |")
    print("|---|---|---|---|---|---|")
    for alg in args.algorithm:
        o = CircuitOptions(alg, ig_steps=args.ig_steps)
        model = HookedNAR.from_pretrained(alg)
        pairs = counterfactual_pairs(alg, o.kind, o.nodes, o.num_graphs, o.seed)
        runs = _runs(model, pairs, True)
        comps = Components(runs.sites, "tied", runs.S)
        exact = exact_scores(runs, comps, o.batch_size, progress=False)
        for name, flags in VARIANTS.items():
            flags = dict(flags)
            r = (
                _runs(model, pairs, flags.pop("hint_gradients"))
                if "hint_gradients" in flags
                else runs
            )
            eap = eap_scores(r, comps, **flags)
            ig = eap_ig_scores(r, comps, args.ig_steps, **flags)
            a = spearman_agreement(eap, exact, args.threshold)
            b = spearman_agreement(ig, exact, args.threshold)
            print(
                f"| {alg} | {name} | {a['spearman']:.3f} | {b['spearman']:.3f} | "
                f"{b['components']}/{len(comps)} | {_per_site(ig, exact, comps, args.threshold)} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
