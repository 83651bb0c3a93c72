"""The causal stage: ablate and steer every concept unit beside null units."""

from __future__ import annotations

from hooked_nar.app.study.context import Section, StudyContext


def stage_causal(ctx: StudyContext) -> Section:
    """Ablate and steer every boolean concept's unit (its SAE feature group) beside a null of
    uninformative units and a positive control, on the concept's own target."""
    if ctx.sae is None:
        return Section(
            "causal",
            "Causal tests",
            "No SAE, so no concept units to test.",
            {"tests": []},
            [("causal", "skipped (no SAE)")],
        )
    from hooked_nar.data import CLRSDataset
    from patching.causal import CausalOptions, causal_concept_tests
    from patching.report import causal_sections

    a = ctx.args
    seed = 30_000 + a.seed
    data = CLRSDataset(
        ctx.algorithm,
        a.causal_graphs,
        generator=a.generator,
        sizes=(a.num_nodes,),
        seed=seed,
        progress=False,
    )
    ctx.log(f"causal: ablating and steering every concept unit on {len(data)} fresh graphs")
    options = CausalOptions(num_null=a.num_null, seed=a.seed, progress=ctx.progress)
    if a.quick:
        options = options.with_(
            ablation_doses=(0.0, 1.0), steer_doses=(0.0, 1.0), sites_per_graph=1
        )
    tests = causal_concept_tests(
        ctx.model, ctx.sae.sae, dataset=data, store=ctx.sae.eval_store, options=options
    )
    from sae.probes import concept_baselines

    ctx.log("causal: concept-score baselines (neurons, random directions, probes)")
    baselines = concept_baselines(ctx.model, data, seed=a.seed)
    lines, images = causal_sections(tests, ctx.out, level=3, baselines=baselines)
    num_null = tests[0].settings["num_null_per_kind"] if tests else 0
    md = [
        f"Each boolean concept's unit (every live SAE feature with AUROC >= "
        f"{options.group_auroc} on the SAE section's held-out rows) is ablated at the (node, step) "
        f"rows where the concept holds, and steered at sites where the algorithm makes the "
        f"concept true next, on "
        f"{len(data)} fresh `{a.generator}` graphs (n = {a.num_nodes}, seed {seed}), beside "
        f"{num_null} null units per kind and the concept's difference-of-means direction "
        "(`patching.causal_concept_tests`)."
        + (
            " Quick mode: too few null units for any verdict but `inconclusive`." if a.quick else ""
        ),
        "",
        *lines,
    ]
    summary = [
        (
            f"causal {t.concept}",
            f"{t.verdict} ({t.unit['kind']} of {t.unit['size']}: margin removed "
            f"{t.ablation.effect:.2f} vs null {t.ablation.null:.2f}, p {t.ablation.p_holm:.2g}"
            + (
                f"; steering flips {t.steering.effect:.2f} vs {t.steering.null:.2f}, "
                f"p {t.steering.p_holm:.2g})"
                if t.steering is not None
                else ")"
            ),
        )
        for t in tests
    ]
    return Section(
        "causal",
        "Causal tests of the concept units",
        "\n".join(md),
        {"tests": tests, "figures": images, "baselines": baselines},
        summary,
    )
