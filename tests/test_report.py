"""`tuner report`: each kind of folder becomes one self-contained page that a real headless
browser (Debian's chromium) opens with no console errors, every plot present and drawn, and
nothing wider than the window at a desktop and a laptop width; screenshots of each at both
widths land in the test's folder (and in $TUNER_TEST_ARTEFACTS when set, for CI to keep)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tuner import history
from tuner.errors import UsageError
from tuner.report import build
from tuner.report import figures as F
from tuner.report.build import kind_of, write_report

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTHS = (1400, 1024)  # a desktop window and a laptop's
# Appended to a copy of the page only (the page itself has no script): the layout's width,
# the page's, and its height for a full-page screenshot.
PROBE = ("<script>const e = document.documentElement; document.body.setAttribute('data-probe', "
         "[e.clientWidth, e.scrollWidth, e.scrollHeight].join(' '));</script></body>")


def tuner(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuner.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=600)


def browse(html: Path, shots: Path, name: str, artefact: bool = True) -> tuple[str, list[str]]:
    """The DOM after the page loaded and the console's error lines, from headless chromium; at
    each of WIDTHS, an assertion that nothing widens the page past the window, and a full-page
    screenshot `shots/<name>-<width>.png` (an `artefact`, copied to $TUNER_TEST_ARTEFACTS when set)."""
    from PIL import Image, ImageStat

    assert CHROMIUM, "chromium is required (apt-get install -y chromium)"
    common = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--allow-file-access-from-files"]
    probe = shots / f".{name}.probe.html"
    probe.write_text(html.read_text().replace("</body>", PROBE))
    artefacts = os.environ.get("TUNER_TEST_ARTEFACTS") if artefact else None
    dom, console = "", []
    for width in WIDTHS:
        r = subprocess.run([*common, "--enable-logging=stderr", "--v=0", f"--window-size={width},900", "--dump-dom",
                            probe.as_uri()], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        dom = r.stdout
        console += [line for line in r.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
        client, scroll, height = map(int, re.search(r'data-probe="(\d+) (\d+) (\d+)"', dom).groups())
        assert scroll <= client, f"{name} at {width} px: the page is {scroll} px wide, past the window's {client}"
        shot = shots / f"{name}-{width}.png"
        subprocess.run([*common, f"--window-size={width},{min(height, 16_000)}", f"--screenshot={shot}", html.as_uri()],
                       capture_output=True, timeout=120, check=True)
        with Image.open(shot) as img:
            assert img.width == width and ImageStat.Stat(img.convert("L")).stddev[0] > 5, f"{shot} is blank"
        if artefacts:
            Path(artefacts).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(artefacts) / shot.name)
        print(f"screenshot: {shot}")
    probe.unlink()
    return dom, console


def assert_layout(page: str) -> None:
    """What keeps a page within the window without a script: every table in a box that scrolls
    sideways, plots that shrink to the width, and nothing fetched."""
    css = re.search(r"<style>(.*?)</style>", page, flags=re.S).group(1)
    assert re.search(r"\.table-wrap\s*\{[^}]*overflow-x:\s*auto", css)
    assert re.search(r"svg, img\s*\{[^}]*max-width:\s*100%", css)
    assert page.count("<table") == page.count('<div class="table-wrap"><table'), "a table outside a scrolling box"
    assert "<script" not in page and "<link" not in page and not re.search(r'(src|href)="(https?:)?//', page)


def plots(dom: str) -> dict[str, str]:
    """Each figure's id and its inline SVG."""
    return dict(re.findall(r'<figure class="plot" data-plot="([^"]+)">(.*?)</figure>', dom, flags=re.S))


def assert_drawn(dom: str, expected: set[str]) -> None:
    found = plots(dom)
    assert expected <= set(found), f"missing plots: {expected - set(found)}"
    for pid, body in found.items():
        assert "<svg" in body, pid
        # Data are drawn as paths (lines, markers, bars) beyond the axes' own few.
        assert body.count("<path") + body.count("<use") > 12, f"plot {pid} looks empty"


def page_figures(monkeypatch, folder: Path) -> dict:
    """The matplotlib figures a page is drawn from, by plot id (taken as the page is built)."""
    figs = {}

    def keep(fid, title, fig, caption=""):
        figs[fid] = fig
        return original(fid, title, fig, caption)

    original = build._figure
    monkeypatch.setattr(build, "_figure", keep)
    build.render(folder)
    return figs


def legends_clear_of_data(fig) -> bool:
    """Whether no legend of `fig` lies over any of its plotting areas."""
    fig.canvas.draw()
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    return all(not lg.get_window_extent().overlaps(ax.get_window_extent()) for lg in legends for ax in fig.axes)


@pytest.fixture(scope="module")
def sim_trial(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "trial"
    r = tuner("sim", "--scenario", "burst", "--duration", "40", "--warmup", "5", "--target", "p99<300ms",
              "--cluster", "ray-autoscaler", "--out", str(out))
    assert r.returncode in (0, 1), r.stderr
    return out


@pytest.fixture(scope="module")
def real_like_trial(sim_trial, tmp_path_factory):
    """The simulated trial dressed as a real one: Prometheus timelines that begin before the
    warm-up (the deploy) and end after the window (the drain), as a real trial's do."""
    from tuner.result import load_result, write_result

    folder = tmp_path_factory.mktemp("report") / "real-like"
    shutil.copytree(sim_trial, folder)
    res = load_result(folder / "result.json")
    res.backend = "real"
    res.replicas = {k: [(-8.0, v[0][1]), *v] for k, v in res.replicas.items()}
    res.replicas["rag/Reranker"] = [(-8.0, 1.0), (-3.0, 2.0), (20.0, 1.0)]  # scaled during the warm-up
    t = np.arange(-8.0, 46.0, 1.0)
    series = pd.DataFrame([{"query": "ongoing_requests", "labels": json.dumps({"application": "rag", "deployment": d}),
                            "t": x, "value": float(abs(np.sin(x / 5 + i)) * 3)} for i, d in enumerate(("RAGService", "Reranker"))
                           for x in t])
    series.to_parquet(folder / "series.parquet")
    res.files["series"] = "series.parquet"
    write_result(folder / "result.json", res)
    return folder


@pytest.fixture(scope="module")
def sim_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "study"
    r = tuner("optimize", "--backend", "sim", "--target", "p99<3s", "--trials", "8", "--duration", "20", "--warmup", "0",
              "--scenario", "steady", "--out", str(out))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    assert (out / "report.html").is_file() and "report:" in r.stdout  # written by default
    return out


@pytest.fixture(scope="module")
def hybrid_study(sim_study, sim_trial, tmp_path_factory):
    """The simulated study dressed as a hybrid one (no real stack here): two verified
    candidates and a real baseline, with their runs under real/<label>/<scenario>/ as the
    hybrid search leaves them: one with its report.html, the others with result.json only."""
    folder = tmp_path_factory.mktemp("report") / "hybrid"
    shutil.copytree(sim_study, folder)
    summary = json.loads((folder / "summary.json").read_text())
    trials = pd.read_csv(folder / "trials.csv")
    real = [("baseline-Ray-defaults", 0, 6.1, 3400.0, False), ("real-001", 1, 4.2, 3300.0, False),
            ("real-002", 2, 4.9, 2100.0, True)]
    sim_row = trials.iloc[0].to_dict()
    trials = pd.concat([trials, pd.DataFrame([sim_row | {"study": "real", "backend": "real", "number": n, "cost_per_hour": c,
                                                         "p99_ms": p, "feasible": ok, "baselines": "Ray defaults" if n == 0
                                                         else ""} for _, n, c, p, ok in real])])
    trials.to_csv(folder / "trials.csv", index=False)
    summary["backend"], summary["trials"] = "hybrid", {"sim": 8, "real": 3}
    summary["baselines"]["Ray defaults"] = {"backend": "real", "trial": 0, "cost_per_hour": 6.1, "feasible": False,
                                            "p99_ms": 3400.0, "label": "baseline-Ray-defaults",
                                            "runs": {"steady": "real/baseline-Ray-defaults/steady"}}
    summary["best"] |= {"backend": "real", "trial": 2, "label": "real-002", "cost_per_hour": 4.9, "p99_ms": 2100.0,
                        "runs": {"steady": "real/real-002/steady"}}
    summary["best"]["savings"].pop("Ray defaults", None)  # it missed for real: no saving against it
    summary["hybrid"] = {"reason": "a candidate passed on the real stack", "rounds": 1, "real_candidates": 2,
                         "sim_winners_failed": 1, "correction": {"p99<3s": 1.31}, "noise_floor": 0.05, "real_repeat": 1,
                         "verified": [{"trial": n, "label": label, "round": 0, "cost_per_hour": c, "sim_cost_per_hour": c,
                                       "p99_ms": p, "sim_p99_ms": p / 1.4, "met": ok, "margin": 1 - p / 3000, "noise": 0.05,
                                       "passed": ok, "runs": {"steady": f"real/{label}/steady"}}
                                      for label, n, c, p, ok in real[1:]]}
    (folder / "summary.json").write_text(json.dumps(summary))
    for label, *_ in real:
        shutil.copytree(sim_trial, folder / "real" / label / "steady", ignore=shutil.ignore_patterns("*.html"))
    write_report(folder / "real" / "real-001" / "steady")
    return folder


def test_a_trial_report_opens_with_every_plot_drawn(sim_trial, tmp_path):
    path = write_report(sim_trial)
    dom, console = browse(path, tmp_path, "trial")
    assert console == []
    assert_drawn(dom, {"latency", "load", "replicas", "nodes", "distribution"})
    assert "p99&lt;300ms" in dom and "Verdict" in dom
    assert_layout(path.read_text())


def test_every_time_plot_of_a_real_trials_page_spans_the_window_and_its_warm_up(real_like_trial, sim_trial, tmp_path,
                                                                                  monkeypatch):
    figs = page_figures(monkeypatch, real_like_trial)
    timed = set(figs) - {"distribution"}  # every plot but the distribution is against time
    assert {"latency", "load", "replicas", "nodes", "ongoing_requests"} <= timed
    for fid in timed:  # data from -8 s to 45 s: cut to the warm-up's start and the window's end
        assert {ax.get_xlim() for ax in figs[fid].axes} == {(-5.0, 40.0)}, fid
        assert any(t.get_text() == F.WARMUP_LABEL for ax in figs[fid].axes for t in ax.texts), fid
    sim = page_figures(monkeypatch, sim_trial)  # no timeline begins before the window: the window alone
    assert {ax.get_xlim() for fid in set(sim) - {"distribution"} for ax in sim[fid].axes} == {(0.0, 40.0)}
    dom, console = browse(write_report(real_like_trial), tmp_path, "trial-real")
    assert console == [] and "5 s before the load window (its warm-up, shaded)" in dom


def test_replicas_span_the_window_a_panel_per_deployment_that_scaled_the_constant_ones_listed():
    constant = {f"app/D{i}": [(0.0, 1.0)] for i in range(10)}
    fig = F.timelines({"app/Scaled": [(0.0, 2.0), (40.0, 1.0)], "app/Other": [(0.0, 1.0), (10.0, 3.0)], **constant},
                      "running replicas", xlim=(0.0, 120.0))
    panels = {ax.get_title("left"): ax for ax in fig.axes}
    assert set(panels) == {"app/Other", "app/Scaled", "constant over the window (running replicas)"}
    for ax in fig.axes:
        assert ax.get_xlim() == (0.0, 120.0)
    (x, y), = [(list(line.get_xdata()), list(line.get_ydata())) for line in panels["app/Scaled"].get_lines()]
    assert x[0] == 0.0 and x[-1] == 120.0 and y[-1] == 1.0  # held to the window's end, not stopped at 40 s
    rows = panels["constant over the window (running replicas)"]
    assert sorted(t.get_text() for t in rows.texts) == sorted(f"{k}: 1" for k in constant)  # each on a row of its own
    assert len({seg[0][1] for coll in rows.collections for seg in coll.get_segments()}) == len(constant)


def test_overlaid_replicas_keep_a_panel_where_the_runs_differ():
    fig = F.timelines({"a": [(-10.0, 1.0), (-2.0, 2.0)], "b": [(0.0, 1.0)]}, "running replicas", xlim=(-5.0, 60.0),
                      overlay={"a": [(0.0, 2.0)], "b": [(0.0, 1.0)]})
    a = next(ax for ax in fig.axes if ax.get_title("left") == "a")
    real, sim = a.get_lines()
    assert list(real.get_xdata()) == [-5.0, -2.0, 60.0] and sim.get_linestyle() == "--"
    assert real.get_color() != sim.get_color() and legends_clear_of_data(fig)


def test_latency_over_time_has_a_panel_per_route_with_its_own_bound():
    t = np.tile(np.arange(0.0, 60.0, 0.5), 2)
    routes = np.array(["/fast"] * 120 + ["/slow"] * 120, dtype=object)
    lat = np.where(routes == "/fast", 20.0, 800.0) + t
    fig = F.latency_over_time(t, lat, routes, [(1000.0, None), (50.0, "/fast")], xlim=(0.0, 60.0))
    panels = {ax.get_title("left"): ax for ax in fig.axes}
    assert set(panels) == {"/fast", "/slow"}
    for route, ax in panels.items():
        p50 = next(line for line in ax.get_lines() if line.get_label() == "p50")
        assert (np.asarray(p50.get_ydata()) < 100).all() == (route == "/fast")  # each route's own percentiles
        assert ax.get_xlim() == (0.0, 60.0)
    assert {line.get_label() for line in panels["/fast"].get_lines()} >= {"target 50 ms", "target 1000 ms"}
    assert "target 50 ms" not in {line.get_label() for line in panels["/slow"].get_lines()}
    assert legends_clear_of_data(fig)


def test_legends_sit_outside_the_data():
    rng = np.random.default_rng(0)
    t = rng.uniform(0, 60, 300)
    lat = rng.lognormal(5, 1, 300)
    routes = np.array(["/a", "/b", "/c"] * 100, dtype=object)
    kinds = pd.Series(pd.Categorical(rng.choice(["timeout", "rejected"], 300)))
    met = rng.random(12) > 0.5
    backends = np.array(["sim"] * 9 + ["real"] * 3)
    figs = {"latency": F.latency_over_time(t, lat, routes, [(300.0, None)], xlim=(0.0, 60.0)),
            "load": F.load_over_time(t, t + 0.2, xlim=(0.0, 60.0)),
            "errors": F.errors_over_time(t, kinds, xlim=(0.0, 60.0)),
            "distribution": F.latency_distribution(lat, routes, [(300.0, None)]),
            "best-cost": F.best_so_far(np.arange(12), rng.uniform(1, 5, 12), met, backends),
            "pareto": F.cost_against_p99(rng.uniform(1, 5, 12), rng.uniform(100, 900, 12), met, backends, [(1.0, 200.0),
                                                                                                         (0.8, 400.0)], [500.0]),
            "against-baselines": F.compared(["best", "Ray defaults"], [1.0, 2.0], ["real", "sim"], [True, False], "cost")}
    for fid, fig in figs.items():
        assert fig.legends or any(ax.get_legend() for ax in fig.axes), fid
        assert legends_clear_of_data(fig), fid


@pytest.mark.parametrize("lo, hi", [(22.0, 560.0), (180.0, 950.0), (20.0, 6000.0), (3.0, 90_000.0), (250.0, 420.0)])
def test_the_latency_distribution_labels_plain_milliseconds_apart(lo, hi):
    fig = F.latency_distribution(np.geomspace(lo, hi, 200), np.array(["/r"] * 200, dtype=object), [])
    fig.canvas.draw()
    ax = fig.axes[0]
    lo_x, hi_x = ax.get_xlim()
    shown = [t for t in ax.get_xticklabels() if t.get_text() and lo_x <= t.get_position()[0] <= hi_x]
    assert len(shown) >= 2 and all(re.fullmatch(r"[0-9.]+", t.get_text()) for t in shown), [t.get_text() for t in shown]
    assert not any(t.get_text() for t in ax.get_xticklabels(minor=True))
    # Apart with room to spare: the browser draws the SVG's text in its own font, often wider.
    boxes = sorted((t.get_window_extent() for t in shown), key=lambda b: b.x0)
    assert all(b.x0 - a.x1 > 0.3 * max(a.width, b.width) for a, b in zip(boxes, boxes[1:]))


def test_a_study_report_shows_the_search(sim_study, tmp_path):
    dom, console = browse(sim_study / "report.html", tmp_path, "study")
    assert console == []
    assert_drawn(dom, {"best-cost", "pareto", "importance", "importance-p99", "against-baselines"})
    assert "Ray defaults" in dom and "Best values, beside the starting config" in dom
    assert_layout((sim_study / "report.html").read_text())
    from tuner.report.build import study_page

    values = next(t for t in study_page(sim_study)["sections"][0]["tables"] if t["caption"].startswith("Best values"))
    assert values["headers"] == ["parameter", "tuned", "starting"] and all(r[2] is not None for r in values["rows"])


def test_a_hybrid_studys_page_tells_simulated_from_real_and_links_the_real_runs(hybrid_study, tmp_path):
    from tuner.report.build import study_page

    page = study_page(hybrid_study)
    tables = {t["caption"]: t for t in page["sections"][0]["tables"]}
    best = tables["Best and baselines"]
    assert best["headers"][1] == "backend" and best["headers"][-1] == "real run"
    rows = {r[0]: r for r in best["rows"]}
    assert rows["best"][1] == "real" and rows["Ray defaults"][1] == "real" and rows["Ray defaults"][-1] is not None
    assert rows["Ray defaults"][5] is None and best["headers"][5] == "best saves (against those that met)"
    assert rows["static 2 replicas"][1] == "sim" and rows["static 2 replicas"][-1] is None  # nothing real to link
    verified = tables["Verified on the real stack"]
    links = {r[1]: r[-1]["links"] for r in verified["rows"]}
    assert links == {"real-001": [{"text": "steady", "href": "real/real-001/steady/report.html"}],
                     "real-002": [{"text": "steady (result.json)", "href": "real/real-002/steady/result.json"}]}
    assert "real p99 ms" in verified["headers"] and "sim p99 ms" in verified["headers"]
    assert any(c.startswith("Best values, beside the starting config's (the best as measured on the real stack)")
               for c in tables)
    # What the page said before stays: the badge, why it stopped, the correction.
    assert page["verdict"]["text"].startswith("met on the real stack (")
    meta = dict(page["meta"])
    assert meta["stopped"] == "a candidate passed on the real stack"
    assert meta["correction of the simulator's p99"] == "p99<3s: x1.31"

    path = write_report(hybrid_study)
    dom, console = browse(path, tmp_path, "study-hybrid")
    assert console == [] and 'href="real/real-001/steady/report.html"' in dom
    assert_drawn(dom, {"best-cost", "pareto", "against-baselines", "real-vs-sim"})
    for label in ("simulated, met", "real, met", "real, missed", "best so far (real)"):
        assert label in plots(dom)["best-cost"], label
    assert "real, missed" in plots(dom)["against-baselines"] and "real, met" in plots(dom)["pareto"]
    for href in re.findall(r'<a href="([^"]+)"', path.read_text()):
        assert (hybrid_study / href).is_file(), href
    elsewhere = write_report(hybrid_study, tmp_path / "study.html")  # links follow the page
    for href in re.findall(r'<a href="([^"]+)"', elsewhere.read_text()):
        assert (elsewhere.parent / href).resolve().is_file(), href


def test_a_hybrid_studys_badge_says_the_verdict_is_the_real_stacks():
    from tuner.report.build import _study_verdict

    done = pd.DataFrame({"backend": ["sim"] * 3 + ["real"], "feasible": [True, True, False, False]})
    v = _study_verdict({"best": None, "hybrid": {"reason": "time budget"}}, done)
    assert v["text"] == "missed on the real stack (2 simulated trials met the target)" and v["css"] == "bad"
    assert _study_verdict({"best": {"cost_per_hour": 1.0}}, done)["text"] == "met"


def test_a_validation_report_overlays_real_and_simulated(real_like_trial, sim_trial, tmp_path):
    from tuner.result import load_result
    from tuner.validate import compare

    folder = tmp_path / "validation"
    shutil.copytree(real_like_trial, folder / "real")
    shutil.copytree(sim_trial, folder / "sim")
    (folder / "validation.json").write_text(json.dumps(compare(load_result(folder / "real" / "result.json"),
                                                               load_result(folder / "sim" / "result.json"))))
    assert kind_of(folder) == "validation"
    dom, console = browse(write_report(folder), tmp_path, "validation")
    assert console == []
    assert_drawn(dom, {"replicas-overlay", "latency-overlay"})
    assert "Errors of the simulator" in dom
    assert_layout((folder / "report.html").read_text())


def test_a_bench_report_shows_each_history_with_its_change_points(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for n in range(15):
        for case in ("steady", "burst"):
            for metric, base in (("p99_ms", 900.0), ("cost_per_hour", 0.5)):
                v = base * (1 + 0.02 * rng.standard_normal()) * (1.3 if case == "burst" and metric == "p99_ms" and n >= 13 else 1)
                rows.append({"night": f"2026-11-{n + 1:02d}T02:00:00Z", "commit": f"c{n}", "machine": "m", "suite": "nightly",
                             "backend": "sim", "case": case, "metric": metric, "value": v, "status": "met"})
    hist = tmp_path / "history"
    history.append(hist, rows)
    r = tuner("bench", "--analyze-only", "--history", str(hist), "--out", str(tmp_path / "night"))
    assert r.returncode == 1, r.stdout + r.stderr
    dom, console = browse(tmp_path / "night" / "report.html", tmp_path, "bench")
    assert console == []
    assert_drawn(dom, {"history-sim-steady", "history-sim-burst"})
    assert "1 regression" in dom and "p99_ms" in dom
    assert_layout((tmp_path / "night" / "report.html").read_text())


def test_a_folder_with_nothing_to_report_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="holds no result.json"):
        kind_of(tmp_path)
    r = tuner("report", str(tmp_path / "missing"))
    assert r.returncode == 2 and "is not a folder" in r.stderr and "Traceback" not in r.stderr


def test_the_trial_report_command_writes_beside_the_results(sim_trial):
    r = tuner("report", str(sim_trial), "--out", str(sim_trial / "custom.html"))
    assert r.returncode == 0 and (sim_trial / "custom.html").stat().st_size > 20_000
    page = (sim_trial / "custom.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count('class="plot"') >= 5


def test_the_browser_check_sees_console_errors_empty_plots_overflow_and_blank_pages(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><h1>Broken</h1><figure class="plot" data-plot="x"><svg></svg></figure>'
                    '<script>undefinedFn();</script></body></html>')
    dom, console = browse(page, tmp_path, "broken", artefact=False)
    assert any("undefinedFn is not defined" in line for line in console)
    with pytest.raises(AssertionError, match="plot x looks empty"):
        assert_drawn(dom, {"x"})
    wide = tmp_path / "wide.html"
    wide.write_text('<!DOCTYPE html><html><body><table><tr><td style="min-width:3000px">x</td></tr></table></body></html>')
    with pytest.raises(AssertionError, match="past the window"):
        browse(wide, tmp_path, "wide", artefact=False)
    with pytest.raises(AssertionError, match="outside a scrolling box"):
        assert_layout(wide.read_text().replace("<body>", "<body><style>.table-wrap { overflow-x: auto } "
                                                         "svg, img { max-width: 100% }</style>"))
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    with pytest.raises(AssertionError, match="is blank"):
        browse(blank, tmp_path, "blank", artefact=False)


def test_a_trial_report_shows_faults_gaps_and_each_kind_of_failure(sim_trial, tmp_path):
    from tuner.result import FaultResult, GapResult, load_result, write_result

    folder = tmp_path / "faulty"
    shutil.copytree(sim_trial, folder)
    res = load_result(folder / "result.json")
    res.faults = [FaultResult(spec="kill-replica@10s:deployment=Reranker", kind="kill-replica", start_s=10,
                              injected_s=10.0, done="killed rag/Reranker replica x (pid 1)",
                              effect={"before": {"requests": 5, "failed": 0}, "during": {"requests": 5, "failed": 1},
                                      "recovery_s": 0.0, "latency_recovery_s": 10.0})]
    res.gaps = [GapResult(start_s=20.0, end_s=28.0)]
    write_result(folder / "result.json", res)
    records = pd.read_parquet(folder / "records.parquet")
    records.loc[records.index[:3], "status"] = 503  # refused by backpressure
    records["error"] = records["error"].astype(object)
    records.loc[records.index[3:5], "error"] = "TimeoutError: timed out"
    records.to_parquet(folder / "records.parquet")
    dom, console = browse(write_report(folder), tmp_path, "trial-faulty")
    assert console == [] and "Faults injected" in dom and "latency back after s" in dom
    assert "Prometheus gap" in dom and "kill-replica" in dom  # shaded spans, labelled in the SVG
    assert "rejected (503)" in dom and "timeout" in dom and "rejected" in dom


def test_the_generator_section_gives_the_send_lag_by_percentile_and_the_generators_cpu():
    from tuner.report.build import _generator_section
    from tuner.result import GeneratorHealth

    lag = np.arange(1.0, 101.0)  # 1..100 ms behind schedule
    df = pd.DataFrame({"lag_ms": np.append(lag, 5000.0), "dropped": [False] * 100 + [True]})  # a drop sends nothing
    g = GeneratorHealth(saturated=False, lag_ms_p99=99.0, cpu_pct=12.0, limits={"max_lag_ms": 250.0, "max_cpu_pct": 90.0})
    rows = dict(map(tuple, _generator_section(g, df, "")["tables"][0]["rows"]))
    assert rows["send lag p50, ms behind schedule"] == pytest.approx(50.5)
    assert rows["send lag p99, ms behind schedule"] == pytest.approx(99.01)
    assert rows["send lag max, ms"] == 100.0
    assert rows["generator CPU, % of one core"] == 12.0 and rows["limit: max_lag_ms"] == 250.0
