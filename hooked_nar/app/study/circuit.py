"""The circuit stage (``--circuit``): the quick run of ``hooked-nar circuit`` on the study's
checkpoint (:func:`patching.circuits.discovery.discover_circuit` with
:data:`~patching.circuits.discovery.QUICK_OPTIONS`), its full report in ``circuit/``."""

from __future__ import annotations

import shlex
import time

from hooked_nar.app.common import PROG
from hooked_nar.app.study.context import Section, StudyContext, format_value, markdown_table

#: The folder, beside report.md, with the circuit run's own report, results and PNGs.
CIRCUIT_DIR = "circuit"
#: The curve areas the report's table shows, circuit then random.
AREA_KEYS = ("cpr_circuit", "cpr_random", "cmd_circuit", "cmd_random")


def stage_circuit(ctx: StudyContext) -> Section:
    """Score the processor's units with EAP, EAP-IG and exact patching on counterfactual
    pairs, and judge top-k circuits beside random ones (as ``hooked-nar circuit --quick``)."""
    from patching.circuits.discovery import (
        QUICK_OPTIONS,
        CircuitOptions,
        discover_circuit,
        has_pointer_output,
    )

    why = None
    if ctx.model is None:
        why = "no checkpoint"
    elif ctx.model.cfg.processor == "discrete":
        why = "a discrete processor's hard states carry no gradient for EAP / EAP-IG"
    elif not has_pointer_output(ctx.algorithm):
        why = f"{ctx.algorithm} has no pointer output pi to score circuits on"
    if why is not None:
        return Section(
            "circuit",
            "Circuits",
            f"Not run: {why}.",
            {"run": False},
            [("circuit", f"skipped ({why})")],
        )
    from patching.circuits.report import write_report

    a = ctx.args
    given = [] if a.checkpoint is None else ["--checkpoint", str(a.checkpoint)]
    argv = ["circuit", "--algorithm", ctx.algorithm, *given, "--quick", "--seed", str(a.seed)]
    command = shlex.join([PROG, *argv])
    ctx.log(f"circuit: {command}")
    options = CircuitOptions(ctx.algorithm, seed=a.seed, **QUICK_OPTIONS)
    start = time.perf_counter()
    result = discover_circuit(ctx.model, options, progress=ctx.progress)
    paths = write_report(
        result, ctx.out / CIRCUIT_DIR, command=command, seconds=time.perf_counter() - start
    )
    figures = {k: str(p.relative_to(ctx.out)) for k, p in paths.items() if str(p).endswith(".png")}
    curves = {
        gran: {method: curve.areas() for method, curve in by_method.items()}
        for gran, by_method in result.curves.items()
    }
    chosen = {
        method: result.chosen_fraction("tied", method)
        for method in ("eap_ig", "mask")
        if method in result.curves.get("tied", {})
    }
    full = result.settings["eval_full"]
    results = {
        "run": True,
        "command": command,
        "options": {k: getattr(options, k) for k in ("kind", "nodes", "ablation", *QUICK_OPTIONS)},
        "clean_metric": result.settings["clean_metric"],
        "reference_metric": result.settings["reference_metric"],
        "full_model": {k: full[k] for k in ("node_accuracy", "graph_accuracy")},
        "agreement": result.agreement,
        "areas": curves,
        "chosen_fraction": chosen,
        "report": f"{CIRCUIT_DIR}/report.md",
        "figures": figures,
    }
    rows = [
        [
            f"{gran} {method}",
            result.agreement.get(gran, {}).get(method, {}).get("spearman"),
            *(areas[k] for k in AREA_KEYS),
        ]
        for gran, by_method in curves.items()
        for method, areas in by_method.items()
    ]
    md = [
        f"`{command}` on this study's checkpoint: {options.num_graphs} `{options.kind}` "
        f"counterfactual pairs of {options.nodes}-node graphs to score, {options.eval_graphs} "
        f"held-out pairs to judge circuits on, `{options.ablation}` ablation. Full model on "
        f"the held-out graphs: node accuracy {format_value(full['node_accuracy'])}. Spearman "
        "with exact patching, and the areas of the sufficiency curve (CPR, ideal 1) and of "
        "|1 - sufficiency| (CMD, ideal 0) of top-k circuits beside random circuits of each size; "
        f"the whole run: [`{CIRCUIT_DIR}/report.md`]({CIRCUIT_DIR}/report.md).",
        "",
        markdown_table(["circuits by", "Spearman vs exact", *AREA_KEYS], rows),
        "",
        *(f"![{k}]({f})" for k, f in figures.items()),
    ]
    tied = curves.get("tied", {}).get("eap_ig")
    summary = [
        (
            "circuit",
            f"EAP-IG tied: Spearman {format_value(result.agreement['tied']['eap_ig'].get('spearman'))}"
            + (
                f", CPR {tied['cpr_circuit']:.3f} vs random {tied['cpr_random']:.3f}"
                if tied
                else ""
            ),
        )
    ]
    summary += [("figure", f) for f in figures.values()]
    return Section("circuit", "Circuits", "\n".join(md), results, summary)
