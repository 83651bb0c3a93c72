"""The browser stage (``--browser``): the offline feature browser of the study's SAE."""

from __future__ import annotations

from hooked_nar.app.study.context import Section, StudyContext, sae_eval_indices


def stage_browser(ctx: StudyContext) -> Section:
    """The offline feature browser of the SAE (``browser/index.html``); run after
    :data:`STAGES` with ``--browser``."""
    if ctx.sae is None:
        return Section("browser", "Feature browser", "Not written (no SAE).", {"written": False})
    import json

    from hooked_nar.app.browser.build import BROWSER_DIR, build_browser

    a = ctx.args
    ctx.log("browser: every feature on the held-out graphs")
    info = build_browser(
        ctx.model,
        ctx.sae.sae,
        ctx.sae_eval,
        ctx.out / BROWSER_DIR,
        json.loads((ctx.out / "results.json").read_text()),
        graph_ids=sae_eval_indices(ctx.dataset, a.sae_eval_graphs, ctx.example),
        seed=a.seed,
        progress=ctx.progress,
    )
    mb = info.bytes / 2**20
    md = (
        f"[`{BROWSER_DIR}/index.html`]({BROWSER_DIR}/index.html): all {info.features} features "
        f"on the held-out graphs, step by step ({mb:.1f} MB, written in {info.seconds:.1f} s). "
        "Open it in a web browser; it works offline from the file."
    )
    results = {"written": True, "path": f"{BROWSER_DIR}/index.html", "bytes": info.bytes}
    summary = [("browser", f"{BROWSER_DIR}/index.html ({mb:.1f} MB, {info.seconds:.1f} s)")]
    return Section("browser", "Feature browser", md, results, summary)
