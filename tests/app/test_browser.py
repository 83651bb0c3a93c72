"""The feature browser: its data against the study and independent recomputation, and the
page itself in headless Chromium (clicks, the step slider, console errors, a screenshot)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from hooked_nar.app.browser.results import causal_by_feature, strongest_baseline, study_baselines
from hooked_nar.app.browser.run_folder import load_run
from hooked_nar.app.browser.write import feature_file

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
#: The page screenshot, kept for people and CI to look at (the folder is .gitignored).
ARTIFACTS = ROOT / "test-artifacts"


def _read_js(path: Path, prefix: str, suffix: str):
    text = path.read_text().strip()
    assert text.startswith(prefix) and text.endswith(suffix), path
    return json.loads(text[len(prefix) : -len(suffix)])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A quick bfs study with --browser, through the command line as a user runs it."""
    from hooked_nar.app.cli import main

    out = tmp_path_factory.mktemp("browser") / "bfs"
    argv = ["study", "--checkpoint", "bfs", "--quick", "--browser", "--output", str(out), "-q"]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    browser = out / "browser"
    index = _read_js(browser / "data" / "index.js", "window.NAR_INDEX = ", ";")
    graphs = _read_js(browser / "data" / "graphs.js", "window.NAR_GRAPHS = ", ";")
    return out, results, index, graphs


def _feature(browser: Path, f: int) -> dict:
    return _read_js(browser / feature_file(f), "NAR_FEATURE(", ");")


def test_study_writes_the_browser_next_to_the_report(run):
    out, results, index, _ = run
    assert (out / "browser" / "index.html").is_file()
    assert results["browser"]["written"] and "browser/index.html" in (out / "report.md").read_text()
    size = sum(p.stat().st_size for p in (out / "browser").rglob("*") if p.is_file())
    assert results["browser"]["bytes"] == size < 20 * 2**20
    html = (out / "browser" / "index.html").read_text()
    assert "http://" not in html and "https://" not in html  # offline: nothing from a CDN
    assert len(index["features"]) == index["meta"]["d_sae"] == 128
    assert index["meta"]["rows"] == results["sae"]["evaluation"]["reconstruction"]["num_rows"]


def test_index_agrees_with_results_json(run):
    out, results, index, _ = run
    features = index["features"]
    rec = results["sae"]["evaluation"]["reconstruction"]
    assert sum(f["dead"] for f in features) / 128 == pytest.approx(rec["frac_dead"])
    assert sum(f["dense"] for f in features) / 128 == pytest.approx(rec["frac_dense"])
    for c in index["concepts"]:
        best = results["sae"]["best"][c["name"]]
        assert c["best_feature"] == best["feature"]
        assert c["best_auroc"] == pytest.approx(best["auroc"], abs=1e-4)
        detail = _feature(out / "browser", best["feature"])
        assert detail["auroc"][c["name"]] == pytest.approx(best["auroc"], abs=1e-4)
        assert best["feature"] in c["group"] or best["auroc"] < index["meta"]["group_auroc"]
    tested = set()
    for t in results["causal"]["tests"]:  # one feature per test, or a unit of features
        ids = [t["feature"]] if "feature" in t else t["unit"]["features"]
        tested.update(ids)
        for f in ids:
            verdicts = {(v["concept"], v["verdict"]) for v in features[f]["causal"]}
            assert (t["concept"], t["verdict"]) in verdicts
    assert tested and [f["id"] for f in features if f["causal"]] == sorted(tested)
    groups = {c["name"]: c["group"] for c in index["concepts"] if c["kind"] == "bool"}
    for t in results["causal"]["tests"]:  # the same groups as the causal tests intervened on
        unit = t.get("unit")
        if isinstance(unit, dict) and str(unit.get("name", "")).startswith("group"):
            assert unit["features"] == groups[t["concept"]]


def test_example_activations_equal_run_with_cache(run):
    """The activations drawn on each example graph, recomputed independently of the
    ActivationStore: run_with_cache on the graph alone, then sae.encode."""
    from hooked_nar.data import collate

    out, results, index, graphs = run
    model, sae, eval_data, *_ = load_run(out)
    f = results["sae"]["best"]["is_visited"]["feature"]
    d = _feature(out / "browser", f)
    tops = [e for e in d["examples"] if e["kind"] == "top"]
    assert tops and [e["kind"] for e in d["examples"]][: len(tops)] == ["top"] * len(tops)
    top_values = [d["acts"][str(e["graph"])][e["step"]][e["node"]] for e in tops]
    assert top_values == sorted(top_values, reverse=True)
    assert top_values[0] == pytest.approx(index["features"][f]["max_activation"], abs=1e-4)
    for g in sorted({e["graph"] for e in d["examples"]}):
        _, cache = model.run_with_cache(collate([eval_data[g]]))
        drawn = torch.tensor(d["acts"][str(g)])  # [S, n]
        assert drawn.shape == (cache.num_processor_steps, graphs[str(g)]["n"])
        for t in range(cache.num_processor_steps):
            with torch.no_grad():
                expect = sae.encode(cache[f"steps.{t}.hook_node_out"])[:, f]
            assert torch.allclose(drawn[t], expect, atol=2e-4), (g, t)


def test_decoder_read_is_the_logit_change_of_adding_the_direction(run):
    """Adding max_act * W_dec[f] to one node's hook_node_out at step 0 moves that node's
    reach_h logit at step 0 by exactly the page's 'at max' value, and no other node's."""
    from hooked_nar.data import collate

    out, results, index, _ = run
    model, sae, eval_data, *_ = load_run(out)
    batch = collate([eval_data[0]])
    node = 2
    for concept in ("is_visited", "is_frontier"):
        f = results["sae"]["best"][concept]["feature"]
        read = {r["row"]: r for r in _feature(out / "browser", f)["decoder"]}
        push = index["features"][f]["max_activation"] * sae.W_dec[f].detach()

        def add(x, hook, push=push):
            x = x.clone()
            x[node] += push
            return x

        with torch.no_grad():
            clean = model(batch).hints["reach_h"][:, 0]
            pushed = model.run_with_hooks(batch, fwd_hooks=[("steps.0.hook_node_out", add)])
        delta = pushed.hints["reach_h"][:, 0] - clean
        assert float(delta[node]) == pytest.approx(read["reach_h"]["at_max"], abs=2e-3)
        assert torch.allclose(delta[torch.arange(len(delta)) != node], torch.zeros(()), atol=1e-5)


def test_results_readers_take_new_formats_and_absences():
    assert causal_by_feature({}) == {} and study_baselines({}, ["a"]) == {}
    group = {"kind": "features", "name": "group", "features": [3, 5], "size": 2}
    results = {
        "causal": {
            "tests": [
                {"concept": "a", "verdict": "causal", "unit": group},
                {"concept": "b", "verdict": "inconclusive", "unit": {"kind": "direction"}},
                {"concept": "c", "verdict": "not causal", "feature": 5},
            ],
            # as patching's concept baselines: "neuron" is an index, not a score
            "baselines": {"a": {"best_neuron": 1.0, "neuron": 1, "random_median": 0.6}},
        },
        "sae": {"baselines": {"x": {"ignored": 0.5}}},  # names no concept of the run
    }
    by_feature = causal_by_feature(results)
    assert by_feature[3] == [{"concept": "a", "verdict": "causal", "unit": "group"}]
    assert [v["verdict"] for v in by_feature[5]] == ["causal", "not causal"]
    assert set(by_feature) == {3, 5}  # a direction names no feature
    assert study_baselines(results, ["a", "b"]) == {"a": {"best_neuron": 1.0, "random_median": 0.6}}
    table = {"best_neuron": 0.9, "probe": 0.99, "probe_control": 0.95, "probe_embedding": 0.7}
    assert strongest_baseline(table) == 0.9  # the model's own probe is no baseline to beat
    assert strongest_baseline({"probe_control_sd": 0.1}) is None
    nested = {"baselines": {"a": {"random": {"median": 0.6, "p95": 0.8}}}}
    assert study_baselines(nested, ["a"]) == {"a": {"random median": 0.6, "random p95": 0.8}}


def test_baselines_equal_sae_concepts_auroc():
    """The baselines rank once for every concept; the AUROCs equal sae.feature_scores.auroc's."""
    from hooked_nar.app.browser.gather import _auroc_from_ranks, computed_baselines
    from sae.feature_scores import auroc, midranks

    gen = torch.Generator().manual_seed(0)
    rows = torch.randn(300, 6, generator=gen).round(decimals=1)  # ties included
    labels = {"a": rows[:, 2] > 0.3, "b": torch.rand(300, generator=gen) < 0.2}
    ranks = midranks(rows)
    for y in labels.values():
        assert torch.allclose(_auroc_from_ranks(ranks, y), auroc(rows, y), atol=1e-6)
    base = computed_baselines(rows, labels, ["a", "b"])
    two_sided = lambda a: torch.maximum(a, 1 - a)  # noqa: E731
    assert base["a"]["best neuron"] == 1.0  # neuron 2 is the concept's own threshold
    assert base["b"]["best neuron"] == pytest.approx(
        float(two_sided(auroc(rows, labels["b"])).max()), abs=1e-4
    )
    assert 0.5 <= base["b"]["random directions median"] <= base["b"]["random directions p95"] < 0.7


def test_concept_table_equals_feature_concept_scores():
    from hooked_nar.app.browser.gather import concept_table
    from sae.feature_scores import feature_concept_scores

    gen = torch.Generator().manual_seed(1)
    acts = torch.relu(torch.randn(400, 12, generator=gen)).round(decimals=1)
    labels = {
        "a": acts[:, 3] > 0.5,
        "b": torch.rand(400, generator=gen) < 0.1,
        "d": acts[:, 5] * 2 + torch.randn(400, generator=gen),
    }
    mine, study = concept_table(acts, labels), feature_concept_scores(acts, labels)
    assert mine.bool_concepts == study.bool_concepts == ["a", "b"]
    assert mine.scalar_concepts == study.scalar_concepts == ["d"]
    for name in ("auroc", "spearman", "frequency", "positive_rate"):
        assert torch.allclose(getattr(mine, name), getattr(study, name), atol=1e-6), name


def test_browse_command_with_any_saelens_dir_and_checkpoint(run, tmp_path, capsys):
    """`hooked-nar browse RUN --sae DIR --checkpoint NAME` gives the same index as the study's
    own browser; a bad --sae is one line and exit code 2."""
    from hooked_nar.app.cli import main

    out, _, index, _ = run
    sae_copy = tmp_path / "my_sae"
    shutil.copytree(out / "sae", sae_copy)
    target = tmp_path / "page"
    argv = ["browse", str(out), "--sae", str(sae_copy), "--checkpoint", "bfs", "-o", str(target)]
    assert main(argv) == 0
    assert "128 features" in capsys.readouterr().out
    again = _read_js(target / "data" / "index.js", "window.NAR_INDEX = ", ";")
    assert again["features"] == index["features"] and again["concepts"] == index["concepts"]
    assert main(["browse", str(out), "--sae", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hooked-nar browse: error: sae=") and "\n" not in err


def test_a_new_study_run_removes_the_previous_browser(tmp_path):
    from hooked_nar.app.study import clear_previous_run

    (tmp_path / "results.json").write_text(json.dumps({"algorithm": "bfs", "stages": []}))
    (tmp_path / "browser" / "data").mkdir(parents=True)
    (tmp_path / "browser" / "index.html").write_text("old")
    clear_previous_run(tmp_path)
    assert not (tmp_path / "browser").exists()


def test_browse_rejects_bad_input_in_one_line(run, tmp_path):
    out, *_ = run
    with pytest.raises(ValueError, match="run_dir=.* is not a folder"):
        load_run(tmp_path / "missing")
    with pytest.raises(ValueError, match="checkpoint=.*dijkstra model; the run is bfs"):
        load_run(out, checkpoint="dijkstra")
    with pytest.raises(ValueError, match="sae=.*not a SAELens directory"):
        load_run(out, sae=tmp_path)


# ------------------------------------------------------------------ in headless Chromium


@pytest.fixture(scope="module")
def page_factory():
    """A function opening a page in headless Chromium that records console errors; skips
    without Chromium or Playwright, except in CI (env CI set), where it fails."""
    missing = None
    if not Path(CHROMIUM).is_file():
        missing = f"{CHROMIUM} not found (apt-get install chromium)"
    else:
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            missing = "playwright not installed (pip install playwright)"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but the browser tests cannot run: {missing}")
        pytest.skip(f"browser tests need headless Chromium: {missing}")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)

        def open_page(url: str):
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.errors = []
            page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else 0)
            page.on("pageerror", lambda e: page.errors.append(str(e)))
            page.goto(url)
            return page

        yield open_page
        browser.close()


def _fmt(x: float) -> str:
    return f"{x:.3f}"


def test_page_click_feature_and_move_the_step_slider(run, page_factory):
    out, results, index, graphs = run
    browser = out / "browser"
    page = page_factory((browser / "index.html").as_uri())
    assert page.locator("#features tbody tr").count() == 128
    f = results["sae"]["best"]["is_visited"]["feature"]
    page.click(f"#features tbody tr[data-feature='{f}']")
    page.wait_for_selector("#feature-title")
    assert page.inner_text("#feature-title") == f"Feature {f}"
    entry = index["features"][f]
    assert page.inner_text("[data-stat='firing_rate']") == _fmt(entry["firing_rate"])
    best = results["sae"]["best"]["is_visited"]["auroc"]
    assert page.inner_text("[data-stat='best']") == f"is_visited (AUROC {best:.3f})"

    d = _feature(browser, f)
    card = page.locator("#top-examples .example").first
    ex = d["examples"][0]
    assert card.get_attribute("data-graph") == str(ex["graph"])
    assert card.get_attribute("data-node") == str(ex["node"])
    acts, g = d["acts"][str(ex["graph"])], graphs[str(ex["graph"])]
    truth = g["truth"]["is_visited"]
    for t in [*range(g["steps"]), ex["step"]]:  # every step, then back
        card.locator("input[type=range]").fill(str(t))
        assert card.get_attribute("data-step") == str(t)
        highlighted = card.locator("svg").first.locator(".node.hl")
        assert highlighted.count() == 1
        assert highlighted.get_attribute("data-node") == str(ex["node"])
        assert card.locator(".act-value").inner_text() == _fmt(acts[t][ex["node"]])
        assert card.locator(".truth-value").inner_text() == str(truth[t][ex["node"]] == "1").lower()
        shown = card.locator("svg").first.locator(".node")
        values = [float(shown.nth(i).get_attribute("data-act")) for i in range(g["n"])]
        assert values == pytest.approx(acts[t], abs=1e-9)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser_feature.png"))
    assert page.errors == []


def test_page_sorts_filters_and_opens_every_feature_without_errors(run, page_factory):
    out, _, index, _ = run
    page = page_factory((out / "browser" / "index.html").as_uri())
    page.click("#features th[data-key='firing_rate']")  # numbers sort descending first
    first = page.locator("#features tbody tr").first.get_attribute("data-feature")
    top_rate = max(f["firing_rate"] for f in index["features"])
    assert index["features"][int(first)]["firing_rate"] == top_rate
    page.fill("#search", "dead")
    dead = sum(f["dead"] for f in index["features"])
    assert page.locator("#features tbody tr").count() == dead
    page.fill("#search", "")
    for f in range(len(index["features"])):
        page.evaluate(f"location.hash = 'feature={f}'")
        page.wait_for_function(
            f"document.getElementById('feature-title')?.textContent === 'Feature {f}'"
        )
    assert page.errors == []
