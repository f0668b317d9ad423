"""`tuner report`: each kind of folder becomes one self-contained page that a real headless
browser (Debian's chromium) opens with no console errors, every plot present and drawn; a
screenshot of each lands in the test's folder."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tuner import history
from tuner.errors import UsageError
from tuner.report.build import kind_of, write_report

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def tuner(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuner.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=600)


def browse(html: Path, shot: Path) -> tuple[str, list[str]]:
    """The DOM after the page loaded, and the console's error lines, from headless chromium;
    and a screenshot of the page."""
    assert CHROMIUM, "chromium is required (apt-get install -y chromium)"
    common = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--allow-file-access-from-files"]
    r = subprocess.run([*common, "--enable-logging=stderr", "--v=0", "--dump-dom", html.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    console = [line for line in r.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    subprocess.run([*common, "--window-size=1200,2400", f"--screenshot={shot}", html.as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
    return r.stdout, console


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


@pytest.fixture(scope="module")
def sim_trial(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "trial"
    r = tuner("sim", "--scenario", "burst", "--duration", "40", "--warmup", "5", "--target", "p99<300ms",
              "--cluster", "ray-autoscaler", "--out", str(out))
    assert r.returncode in (0, 1), r.stderr
    return out


def test_a_trial_report_opens_with_every_plot_drawn(sim_trial, tmp_path):
    path = write_report(sim_trial)
    dom, console = browse(path, tmp_path / "trial.png")
    assert console == []
    assert_drawn(dom, {"latency", "load", "replicas", "nodes", "distribution"})
    assert "p99&lt;300ms" in dom and "Verdict" in dom
    page = path.read_text()
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<link" not in page  # nothing to fetch


def test_a_study_report_shows_the_search(tmp_path):
    out = tmp_path / "study"
    r = tuner("optimize", "--backend", "sim", "--target", "p99<3s", "--trials", "8", "--duration", "20", "--warmup", "0",
              "--scenario", "steady", "--out", str(out))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    assert (out / "report.html").is_file() and "report:" in r.stdout  # written by default
    dom, console = browse(out / "report.html", tmp_path / "study.png")
    assert console == []
    assert_drawn(dom, {"best-cost", "pareto", "importance", "importance-p99", "against-baselines"})
    assert "Ray defaults" in dom and "Best values, beside the starting config" in dom
    from tuner.report.build import study_page

    values = next(t for t in study_page(out)["sections"][0]["tables"] if t["caption"].startswith("Best values"))
    assert values["headers"] == ["parameter", "tuned", "starting"] and all(r[2] is not None for r in values["rows"])


def test_a_hybrid_studys_badge_says_the_verdict_is_the_real_stacks():
    import pandas as pd

    from tuner.report.build import _study_verdict

    done = pd.DataFrame({"backend": ["sim"] * 3 + ["real"], "feasible": [True, True, False, False]})
    v = _study_verdict({"best": None, "hybrid": {"reason": "time budget"}}, done)
    assert v["text"] == "missed on the real stack (2 simulated trials met the target)" and v["css"] == "bad"
    assert _study_verdict({"best": {"cost_per_hour": 1.0}}, done)["text"] == "met"


def test_a_validation_report_overlays_real_and_simulated(sim_trial, tmp_path):
    from tuner.result import load_result
    from tuner.validate import compare

    folder = tmp_path / "validation"
    # A stand-in "real" run: the same simulated trial (the page only reads the two folders).
    for name in ("real", "sim"):
        shutil.copytree(sim_trial, folder / name)
    res = load_result(folder / "sim" / "result.json")
    (folder / "validation.json").write_text(json.dumps(compare(res, res)))
    assert kind_of(folder) == "validation"
    dom, console = browse(write_report(folder), tmp_path / "validation.png")
    assert console == []
    assert_drawn(dom, {"replicas-overlay", "latency-overlay"})
    assert "Errors of the simulator" in dom


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
    dom, console = browse(tmp_path / "night" / "report.html", tmp_path / "bench.png")
    assert console == []
    assert_drawn(dom, {"history-sim-steady", "history-sim-burst"})
    assert "1 regression" in dom and "p99_ms" in dom


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


def test_the_browser_check_sees_console_errors_and_empty_plots(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><figure class="plot" data-plot="x"><svg></svg></figure>'
                    '<script>undefinedFn();</script></body></html>')
    dom, console = browse(page, tmp_path / "broken.png")
    assert any("undefinedFn is not defined" in line for line in console)
    with pytest.raises(AssertionError, match="plot x looks empty"):
        assert_drawn(dom, {"x"})


def test_a_trial_report_shows_faults_gaps_and_each_kind_of_failure(sim_trial, tmp_path):
    import pandas as pd

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
    dom, console = browse(write_report(folder), tmp_path / "faulty.png")
    assert console == [] and "Faults injected" in dom and "latency back after s" in dom
    assert "Prometheus gap" in dom and "kill-replica" in dom  # shaded spans, labelled in the SVG
    assert "rejected (503)" in dom and "timeout" in dom and "rejected" in dom


def test_the_generator_section_gives_the_send_lag_by_percentile_and_the_generators_cpu():
    import pandas as pd

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
