"""The study over the simulator backend: baselines first, the known optimum of a small space,
resume without losing a completed trial (also after a kill), outputs, usage errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from tuner.optimize.evaluate import SimBackend
from tuner.optimize.output import write_outputs
from tuner.optimize.space import Space, apply, load_space, repair
from tuner.optimize.study import baselines, best_trial, pareto_front, run_study
from tuner.plan import make_plan
from tuner.sim.calibration import StageTiming
from tuner.simulate import sim_setup

CONFIG = yaml.safe_load(open("target_app/serve_config.yaml"))
# The search's mechanics are tested on a LoRA route of fixed local-mode timing (the model one
# request at a time, 48 ms, 78 ms adapter loads; its ingress 16 ms: as this machine's CPU model
# measured once), not on the accelerator tables the shipped config emulates, nor on whatever
# the shipped calibration holds.
next(d for a in CONFIG["applications"] for d in a["deployments"]
     if d["name"] == "MultiLoRAModel")["user_config"]["compute"] = {"mode": "local"}
LORA_TIMINGS = {"MultiLoRAModel": StageTiming(service_ms=((1, 47.8),), cv=0.17, concurrency=1, start_s=21.0, load_ms=78.3),
                "LoRACompletions": StageTiming(service_ms=((1, 15.5),), cv=0.17, start_s=15.0)}
LORA = (Path("scenarios/steady.py"), ("--rate", "8", "--mix", "lora=1"))
KEY = "serve.MultiLoRAModel.num_replicas"
SPACE = Space.model_validate({"serve": {"MultiLoRAModel": {"num_replicas": {"type": "int", "low": 1, "high": 4}}}})


def backend(target: str) -> SimBackend:
    plan = make_plan(config=None, serve_config=CONFIG, scenario=LORA[0], target=target, duration_s=40,
                     out=Path("/nonexistent"), warmup_s=5, check=False)
    setup = sim_setup("local")
    cal = setup.calibration.model_copy(update={"stages": {**setup.calibration.stages, **LORA_TIMINGS},
                                               "request_cpu_ms": {}})
    return SimBackend(plan, replace(setup, calibration=cal), [LORA])


@pytest.fixture(scope="module")
def grid():
    """Every configuration of the small space, evaluated: the ground truth."""
    b = backend("p99<60s")
    evs = {n: b.evaluate(apply(CONFIG, repair({"serve.MultiLoRAModel.num_replicas": n}, SPACE, CONFIG)))
           for n in range(1, 5)}
    return evs


def test_the_study_finds_the_cheapest_configuration_that_meets_the_target(grid, tmp_path):
    p99 = {n: ev.p99_ms() for n, ev in grid.items()}
    cost = {n: ev.cost for n, ev in grid.items()}
    assert cost[1] < cost[2] < cost[3] < cost[4]
    # a bound between the p99s that 1 and 4 replicas reach: the answer is the fewest replicas under it
    bound = (p99[1] + min(p99.values())) / 2
    expected = min((n for n in grid if p99[n] < bound), key=lambda n: cost[n])
    study = run_study(backend(f"p99<{bound:.0f}ms"), SPACE, CONFIG, trials=10, storage=f"sqlite:///{tmp_path}/s.db",
                      name="t", seed=1)
    best = best_trial(study)
    assert best is not None and best.user_attrs["values"]["serve.MultiLoRAModel.num_replicas"] == expected
    assert best.value == pytest.approx(cost[expected])
    # an autoscaled deployment has no num_replicas: the starting config gets Ray's default too
    assert study.trials[0].user_attrs.get("baselines") == ["starting config", "Ray defaults"]
    # Savings only against baselines that met the target: one that missed is no alternative.
    summary = write_outputs(tmp_path / "out", CONFIG, {"target": f"p99<{bound:.0f}ms"}, [("sim", study)], ("sim", best))
    assert not summary["baselines"]["Ray defaults"]["feasible"]  # the fewest replicas, over the bound
    assert set(summary["best"]["savings"]) == {k for k, b in summary["baselines"].items() if b["feasible"]}


def test_baselines_are_the_starting_config_and_rays_defaults_clipped_into_the_ranges():
    space = load_space(None, CONFIG)
    b = baselines(space.model_copy(update={"cluster": {}}), CONFIG)
    assert b["starting config"]["serve.QueryRewriter.target_ongoing_requests"] == 8
    assert b["starting config"]["serve.QueryRewriter.max_batch_size"] == 16
    assert b["Ray defaults"]["serve.QueryRewriter.max_ongoing_requests"] == 5
    assert b["Ray defaults"]["serve.VectorSearch.max_ongoing_requests"] == 5
    assert b["Ray defaults"]["serve.Reranker.upscale_delay_s"] == 30.0
    # a GPU replica asks Ray for a whole card, as the shipped config's replicas own one
    assert b["Ray defaults"]["serve.LegalClassifier.devices"] == b["starting config"]["serve.LegalClassifier.devices"] == 1


def test_pareto_mode_minimises_cost_and_p99_and_reports_the_feasible_front(tmp_path):
    study = run_study(backend("p99<60s"), SPACE, CONFIG, trials=8, storage=f"sqlite:///{tmp_path}/s.db", name="t",
                      seed=1, pareto=True)
    assert len(study.directions) == 2
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert all(t.values[1] == pytest.approx(t.user_attrs["p99_ms"]) for t in done)
    front = pareto_front(study)
    assert front and best_trial(study).number == front[0].number
    for t in front:  # nothing feasible is cheaper and faster
        assert not any(o.values[0] < t.values[0] and o.values[1] < t.values[1] for o in done if o.user_attrs["feasible"])
    # here cost rises and p99 falls with every replica: each replica count is on the front
    counts = {t.user_attrs["values"][KEY] for t in front}
    assert counts == {t.user_attrs["values"][KEY] for t in done}


def test_baselines_with_the_same_values_share_one_trial_and_a_named_config_is_one(tmp_path):
    other = apply(CONFIG, {"serve.MultiLoRAModel.num_replicas": 3})
    study = run_study(backend("p99<60s"), SPACE, CONFIG, trials=3, storage=f"sqlite:///{tmp_path}/s.db", name="t",
                      named_baselines={"seed article": CONFIG, "mine": other})
    labels = [t.user_attrs.get("baselines") for t in study.trials[:2]]
    assert labels == [["starting config", "Ray defaults", "seed article"], ["mine"]]
    assert study.trials[1].user_attrs["values"]["serve.MultiLoRAModel.num_replicas"] == 3


def test_resume_continues_with_every_completed_trial_kept(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    b = backend("p99<60s")
    first = run_study(b, SPACE, CONFIG, trials=3, storage=url, name="t", seed=2)
    before = [(t.number, t.params, t.value) for t in first.trials]
    again = run_study(b, SPACE, CONFIG, trials=5, storage=url, name="t", seed=2, resume=True)
    done = [t for t in again.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 5 and [(t.number, t.params, t.value) for t in again.trials[:3]] == before
    summary = write_outputs(tmp_path / "out", CONFIG, {"target": "p99<60s"}, [("sim", again)],
                            ("sim", best_trial(again)), pareto=pareto_front(again))
    assert summary["trials"] == {"sim": 5} and summary["best"] is not None
    assert summary["pareto"] and summary["pareto"][0]["cost_per_hour"] == summary["best"]["cost_per_hour"]
    assert set(summary["baselines"]) == {"starting config", "Ray defaults"}
    assert summary["best"]["savings"]["Ray defaults"]["basis"] == "sim"
    rows = pd.read_csv(tmp_path / "out" / "trials.csv")
    assert len(rows) == 5 and "serve.MultiLoRAModel.num_replicas" in rows.columns
    best_cfg = yaml.safe_load((tmp_path / "out" / "best_serve_config.yaml").read_text())
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(best_cfg)


OPT = [sys.executable, "-m", "tuner.cli", "optimize", "--backend", "sim", "--duration", "30", "--warmup", "0", "--scenario",
       "steady:--rate 3"]


def test_a_killed_study_resumes_without_losing_a_completed_trial(tmp_path):
    out, log = tmp_path / "opt", tmp_path / "first.log"
    # TPE: the sampler is not what is tested, and GP's fits slow every trial; the output goes to a
    # file, since a pipe nobody reads would stall the search once full
    cmd = [*OPT, "--target", "p99<2s", "--out", str(out), "--sampler", "tpe"]
    with log.open("w") as sink:
        proc = subprocess.Popen([*cmd, "--trials", "200"], stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 480  # the suite runs these tests niced beside the stack's
            while time.monotonic() < deadline and proc.poll() is None:
                time.sleep(1)
                if (out / "study.db").exists() and _completed(out) >= 3:
                    break
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    done = _completed(out)
    assert done >= 3, log.read_text()[-2000:]
    r = subprocess.run([*cmd, "--trials", str(done + 2), "--resume"], capture_output=True, text=True, timeout=600)
    assert r.returncode in (0, 1), r.stdout[-2000:] + r.stderr[-2000:]
    assert _completed(out) == done + 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trials"] == {"sim": done + 2}


def _completed(out: Path) -> int:
    import sqlalchemy.exc

    url = f"sqlite:///{out}/study.db"
    try:
        if "tuner" not in optuna.study.get_all_study_names(url):  # the file is made before the study
            return 0
    except sqlalchemy.exc.IntegrityError:  # read while the search is still creating the schema: not yet
        return 0
    study = optuna.load_study(study_name="tuner", storage=url)
    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


@pytest.mark.parametrize("args, expected", [
    (["--backend", "nope"], "--backend: 'nope' is not one of hybrid, sim, real"),
    (["--backend", "real", "--cluster", "hpa"], "the local stack is one fixed node"),
    (["--sampler", "cma"], "--sampler: 'cma' is not one of auto, tpe, gp, random"),
    (["--baseline", "/nonexistent.yaml"], "serve config /nonexistent.yaml: does not exist"),
    (["--scenario", "nope"], "no scenario 'nope'"),
    (["--target", "p99<5"], "missing unit"),
])
def test_optimize_usage_errors_exit_2_with_one_line(tmp_path, args, expected):
    cmd = [sys.executable, "-m", "tuner.cli", "optimize", "--out", str(tmp_path / "o")]
    if "--target" not in args:
        cmd += ["--target", "p99<1s"]
    r = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2 and len(lines) == 1 and expected in lines[0], r.stderr


def test_an_existing_study_is_not_overwritten_without_resume(tmp_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "study.db").write_text("")
    r = subprocess.run([sys.executable, "-m", "tuner.cli", "optimize", "--target", "p99<1s", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "pass --resume" in r.stderr


def test_a_study_on_the_ray_autoscaler_layer_searches_and_writes_its_settings(tmp_path):
    out = tmp_path / "opt"
    r = subprocess.run([*OPT, "--target", "p99<5s", "--out", str(out), "--trials", "4", "--cluster", "ray-autoscaler"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rows = pd.read_csv(out / "trials.csv")
    assert "cluster.ray-autoscaler.idle_timeout_s" in rows.columns and len(rows) == 4
    tuned = yaml.safe_load((out / "best_cluster.yaml").read_text())["ray-autoscaler"]
    best = json.loads((out / "summary.json").read_text())["best"]["values"]
    assert tuned["ray_autoscaler"]["idle_timeout_s"] == pytest.approx(best["cluster.ray-autoscaler.idle_timeout_s"])
    assert tuned["ray_autoscaler"]["upscaling_mode"] == best["cluster.ray-autoscaler.upscaling_mode"]


def test_a_real_search_without_a_stack_exits_3(tmp_path):
    r = subprocess.run([sys.executable, "-m", "tuner.cli", "optimize", "--state-dir", str(tmp_path / "none"), "--target",
                        "p99<1s", "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 3 and len(lines) == 1 and "needs the stack: no stack is running" in lines[0]


def test_the_study_storage_opens_in_optuna_dashboard_as_it_is(tmp_path):
    """The README's `optuna-dashboard sqlite:///<out>/study.db`: the real dashboard server
    lists the study and its completed trials from the file the search wrote."""
    import httpx

    from tuner.ports import free_port

    url = f"sqlite:///{tmp_path}/study.db"
    study = run_study(backend("p99<60s"), SPACE, CONFIG, trials=3, storage=url, name="dash", seed=1)
    port = free_port()
    dashboard = Path(sys.executable).parent / "optuna-dashboard"
    proc = subprocess.Popen([str(dashboard), url, "--host", "127.0.0.1", "--port", str(port), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline, studies = time.monotonic() + 60, None
        while time.monotonic() < deadline and studies is None:
            try:
                studies = httpx.get(f"http://127.0.0.1:{port}/api/studies", timeout=5).json()["study_summaries"]
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                time.sleep(0.3)
        (found,) = [s for s in studies if s["study_name"] == "dash"]
        detail = httpx.get(f"http://127.0.0.1:{port}/api/studies/{found['study_id']}", timeout=10).json()
        assert len(detail["trials"]) == len(study.trials) == 3
    finally:
        proc.terminate()
        proc.wait(10)
