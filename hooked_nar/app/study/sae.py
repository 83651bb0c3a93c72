"""The SAE stage: train (or take) an SAE on ``hook_node_out``, evaluate it, find the
feature of every concept."""

from __future__ import annotations

from hooked_nar.app.study.context import Section, StudyContext, sae_eval_indices


def stage_sae(ctx: StudyContext) -> Section:
    """Train an SAE on ``hook_node_out`` (or take ``--sae``), evaluate it, find concept features."""
    if ctx.model is None:
        return Section(
            "sae",
            "SAE",
            "No checkpoint, so no activations to train an SAE on.",
            {"trained": False},
            [("sae", "skipped (no checkpoint)")],
        )
    from hooked_nar.app.sae_study import sae_study
    from hooked_nar.data import TRAIN_SIZES, CLRSDataset
    from sae.report import report_sections

    a = ctx.args
    ds = ctx.dataset
    keep = sae_eval_indices(ds, a.sae_eval_graphs, ctx.example)
    ctx.sae_eval = ds[keep]
    ctx.sae_example = keep.index(ctx.example)
    train = None
    if a.sae_model is None:
        ctx.log(f"sae: {a.sae_graphs} training graphs, n in {TRAIN_SIZES}")
        train = CLRSDataset(
            ctx.algorithm, a.sae_graphs, sizes=TRAIN_SIZES, seed=a.seed + 1, progress=False
        )
    result = sae_study(
        ctx.model,
        train,
        ctx.sae_eval,
        ctx.out,
        sae=a.sae_model,
        steps=a.sae_steps,
        seed=a.seed,
        model_name=str(a.checkpoint_path),
        graph=ctx.sae_example,
        progress=ctx.progress,
        log=lambda m: ctx.log(f"sae: {m}"),
    )
    ctx.sae = result
    ev, an = result.evaluation, result.analysis
    rec, rr = ev["reconstruction"], ev["downstream"]["recovered"]
    steps = result.sae.cfg.metadata.training_steps
    source = (
        f"given (`{a.sae}`)"
        if a.sae_model is not None
        else f"trained through SAELens's `SAETrainer` for {steps} steps on "
        f"{len(result.store)} valid rows of {a.sae_graphs} graphs (n in {TRAIN_SIZES})"
    )
    md = [
        f"SAE {result.config} at `hook_node_out`, every processor step: {source}; saved to "
        f"`sae/` (`sae_lens.SAE.load_from_disk`). Held out: {len(ctx.sae_eval)} of the graphs "
        f"above, {len(result.eval_store)} valid (node, step) rows; concepts labelled with the "
        "state each step computes (hint t+1).",
        "",
        *report_sections(ev, an, images=result.images, level=3),
    ]
    covered = f"{len(an['covered'])}/{len(an['scores'].bool_concepts)}"
    summary = [
        (
            "sae",
            f"{result.config}: EV {rec['explained_variance']:.3f}, L0 {rec['l0']:.1f}, "
            f"recovered output {rr['output_accuracy']:.3f} / hint {rr['hint_accuracy']:.3f}",
        ),
        ("concept features", f"{covered} boolean concepts at AUROC >= 0.95"),
    ]
    summary += [
        (
            f"  {c}",
            f"feature {b['feature']}, AUROC {b['auroc']:.3f}"
            if "auroc" in b
            else f"feature {b['feature']}, Spearman {b['spearman']:.3f}",
        )
        for c, b in an["best"].items()
    ]
    return Section("sae", "SAE and concept features", "\n".join(md), result.summary(), summary)
