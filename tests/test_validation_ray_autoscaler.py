"""The Ray autoscaler validation's pure parts (tuner.validation.ray_autoscaler): Ray's log lines
to events, step timelines and their figures, the calibration read off a real run, the
comparison with the model and its error budget, the report; and the fake cluster's
config and stop-by-PID on a stand-in process tree (no Ray cluster: the real one is
tests/e2e/test_ray_autoscaler_validation.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime

import pytest

from tuner.validation.ray_autoscaler import calibration, ray_logs, timelines
from tuner.validation.ray_autoscaler.compare import VARIANTS, compare
from tuner.validation.ray_autoscaler.fake_cluster import FAKE_HEAD_NODE_ID, NODE_TYPE, FakeAutoscalingCluster
from tuner.validation.ray_autoscaler.report import report, side_by_side, table
from tuner.validation.ray_autoscaler.sim_burst import simulate

T0 = 1_700_000_000.0
A, B = "a" * 56, "b" * 56
PARAMS = {"n_actors": 4, "actor_cpus": 1.0, "node_cpus": 2.0, "infeasible_actors": 0, "max_workers": 4,
          "hold_s": 30.0, "idle_timeout_s": 10.0, "loop_s": 5, "pod_start_s": None}


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(T0 + t).strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]


def monitor_log() -> str:
    """monitor.log of a 4-actor burst: the config read twice at start, then every 5.05 s; 2 nodes
    added at 1.9 s, removed idle at 42.2 s."""
    its = [-3.2, -2.9] + [1.8 + 5.05 * k for k in range(13)]
    lines = [(t, "WARNING config.py:100 -- Dropping the empty legacy field head_node. head_node is ignored")
             for t in its]
    lines += [(1.9, "INFO autoscaler.py:300 -- Adding 2 node(s) of type cpu_node."),
              (2.0, "INFO node_launcher.py:50 -- Launched 2 nodes of type cpu_node."),
              (42.2, "INFO autoscaler.py:400 -- Removing 2 nodes of type cpu_node (idle)."),
              (42.3, f"INFO autoscaler.py:410 -- Drained ray on {A}(success=True, msg=)")]
    return "\n".join(f"{_stamp(t)}\t{msg}" for t, msg in sorted(lines)) + "\nnot a log line\n"


def gcs_log() -> str:
    def line(t, msg, src="gcs_node_manager.cc:100"):
        return f"[{_stamp(t)} I 123 456] (gcs_server) {src}: {msg}"

    return "\n".join([line(-20.0, f"Registering new node. node_id={FAKE_HEAD_NODE_ID}"),
                      line(4.1, f"Registering new node. node_id={A}, address=1.2.3.4"),
                      line(5.6, f"Registering new node. node_id={B}, address=1.2.3.5"),
                      line(42.35, f"Removing node node_id={A} reason DRAINED"),
                      line(42.45, f"Node is dead node_id={B}"),
                      line(43.0, f"Registering new node. node_id={A}", src="other.cc:1")])


def real_run(events=None, gcs=None) -> dict:
    """A real run as `real_burst.run_burst` returns it: 1 node alive at 4.5 s, 2 at 6 s, released
    at 30 s, gone at 42.5 and 43 s (0.5 s polls)."""
    samples = [[round(-2.0 + 0.5 * k, 3), 0] for k in range(105)]
    for s in samples:
        t = s[0]
        s[1] = 0 if t < 4.5 else 1 if t < 6.0 else 2 if t < 42.5 else 1 if t < 43.0 else 0
    return {"t0_unix": T0, "samples": samples,
            "pending_demand": [[t, 4 if 1.0 <= t < 6.0 else 0] for t, _ in samples], "released_at": 30.02,
            "joined": {A: 4.5, B: 6.0}, "left": {A: 42.5, B: 43.0}, "actor_ready": [4.6, 4.6, 6.1, 6.1],
            "events": ray_logs.monitor_events(monitor_log(), T0) if events is None else events,
            "gcs": ray_logs.gcs_events(gcs_log(), T0) if gcs is None else gcs, "wall_s": 75.0,
            "leftover_processes": []}


# -- Ray's logs ---------------------------------------------------------------------------------

def test_monitor_log_gives_decisions_launches_drains_and_iterations():
    ev = ray_logs.monitor_events(monitor_log(), T0)
    assert [e for e in ev if e["kind"] != "iteration"] == [
        {"t": 1.9, "kind": "add", "count": 2, "type": NODE_TYPE},
        {"t": 2.0, "kind": "launched", "count": 2, "type": NODE_TYPE},
        {"t": 42.2, "kind": "remove", "count": 2, "type": NODE_TYPE, "cause": "idle"},
        {"t": 42.3, "kind": "drained", "node": A, "accepted": True}]
    assert [e["t"] for e in ev if e["kind"] == "iteration"][:3] == [-3.2, -2.9, 1.8]


def test_gcs_log_gives_first_registration_and_death_per_node_from_the_node_manager_only():
    g = ray_logs.gcs_events(gcs_log(), T0)
    assert g == {"registered": {FAKE_HEAD_NODE_ID: -20.0, A: 4.1, B: 5.6}, "dead": {A: 42.35, B: 42.45}}


def test_missing_log_files_give_no_events(tmp_path):
    assert ray_logs.autoscaler_events(None, T0) == []
    assert ray_logs.autoscaler_events(tmp_path / "monitor.log", T0) == []
    assert ray_logs.gcs_node_events(tmp_path / "gcs_server.out", T0) == {"registered": {}, "dead": {}}
    (tmp_path / "monitor.log").write_text(monitor_log())
    assert ray_logs.autoscaler_events(tmp_path / "monitor.log", T0) == ray_logs.monitor_events(monitor_log(), T0)


def test_the_gcs_series_counts_worker_nodes_not_the_head():
    assert ray_logs.gcs_series(real_run()) == [[-2.0, 0], [4.1, 1], [5.6, 2], [42.35, 1], [42.45, 0]]


# -- timelines ----------------------------------------------------------------------------------

def test_steps_keep_one_point_per_instant_and_drop_repeats():
    assert timelines.steps([(0.0, 0), (1.0001, 1), (1.0002, 2), (2.0, 2), (3.0, 1), (3.0, 2)]) == [[0.0, 0], [1.0, 2]]
    assert timelines.steps([]) == []


def test_step_value_is_the_last_point_at_or_before():
    s = [[-1.0, 0], [2.0, 3], [5.0, 1]]
    assert [timelines.step_value(s, t) for t in (-5.0, 1.999, 2.0, 4.9, 100.0)] == [0, 0, 3, 3, 1]
    assert timelines.step_value([], 1.0) == 0


def test_figures_of_a_ramp_and_a_scale_down():
    f = timelines.figures([[-2.0, 0], [4.5, 1], [6.0, 2], [42.5, 1], [43.0, 0]], release_at=30.0)
    assert f == {"peak": 2, "time_to_first_node_s": 4.5, "time_to_peak_s": 6.0,
                 "first_scale_down_after_release_s": 12.5, "scale_down_to_zero_after_release_s": 13.0,
                 "count_before_burst": 0, "monotone_up_before_release": True, "final": 0}
    never_down = timelines.figures([[0.0, 0], [5.0, 2], [8.0, 1], [9.0, 2]], release_at=30.0)
    assert never_down["first_scale_down_after_release_s"] is None and not never_down["monotone_up_before_release"]


def test_mae_on_the_half_second_grid():
    err, rows = timelines.mae([[0.0, 0], [1.0, 2]], [[0.0, 0], [2.0, 2]], t_end=3.0)
    assert [r[0] for r in rows] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert err == pytest.approx(4 / 7)


# -- calibration --------------------------------------------------------------------------------

def test_pod_start_is_matched_launch_to_gcs_registration_in_join_order():
    pods = calibration.measured_pod_start(real_run())
    assert pods["launch_times"] == [1.9, 1.9] and pods["join_times"] == [4.1, 5.6]
    assert pods["delays"] == [2.2, 3.7] and pods["median"] == 2.95 and pods["source"].startswith("gcs_server.out")


def test_pod_start_falls_back_to_the_first_poll_without_a_gcs_log():
    pods = calibration.measured_pod_start(real_run(gcs={"registered": {}, "dead": {}}))
    assert pods["delays"] == [2.6, 4.1] and pods["source"] == "first poll alive (0.5 s resolution)"
    assert calibration.measured_pod_start(real_run(events=[]))["median"] is None


def test_iterations_take_the_later_of_two_marks_under_a_second_apart_and_decide_at_their_action():
    ev = real_run()["events"]
    starts = calibration.iteration_starts(ev)
    assert starts[:2] == [-2.9, 1.8] and len(starts) == 14
    decided = calibration.decision_times(ev)
    assert decided[1] == 1.9  # the add, logged within that iteration
    assert decided[9] == 42.2  # the removal
    per = calibration.iteration_periods(ev)
    assert per["periods"][0] == 4.7 and per["max_period_s"] == 5.05
    assert calibration.iteration_periods([])["mean_period_s"] is None


# -- the model and the comparison ---------------------------------------------------------------

def test_the_model_runs_the_burst_with_its_own_phase_an_aligned_phase_or_replayed_ticks():
    from tuner.policies.ray_autoscaler import RayAutoscalerConfig, WorkerGroup

    cfg = RayAutoscalerConfig(groups=(WorkerGroup(name=NODE_TYPE, resources={"CPU": 2.0}, max_workers=4),),
                              upscaling_mode="Default", idle_timeout_s=10.0, loop_s=5, pod_start_s=2.0)
    own = simulate(cfg, 4, 1.0, release_at=30.0, until=60.0)
    assert own["ticks"][:2] == [5.0, 10.0] and own["running"] == [[0.0, 0], [7.0, 2], [45.0, 0]]
    aligned = simulate(cfg, 4, 1.0, release_at=30.0, until=60.0, first_tick_at=1.9)
    assert aligned["ticks"][0] == 1.9 and aligned["running"][1] == [3.9, 2]
    replayed = simulate(cfg, 4, 1.0, release_at=30.0, until=60.0, tick_times=[1.0, 6.0, 41.0, 46.0])
    assert replayed["ticks"] == [1.0, 6.0, 41.0, 46.0] and replayed["running"][1:] == [[3.0, 2], [41.0, 0]]
    assert all(p is not None for p in replayed["replica_placed"])
    stuck = simulate(cfg, 4, 1.0, release_at=30.0, until=60.0, infeasible=1)
    assert max(n for _, n in stuck["running"]) == 2 and stuck["running"][-1][1] == 0


def test_compare_calibrates_on_the_real_run_and_bounds_the_error():
    res = compare(real_run(), dict(PARAMS), ray_version="test")
    assert res["params"]["pod_start_s"] == 2.95 and res["params"]["ray_version"] == "test"
    assert res["calibration"]["first_launch_s"] == 1.9 and res["calibration"]["demand_first_seen_in_gcs_s"] == 1.0
    assert res["real"]["figures"]["peak"] == 2 and "iteration" not in {e["kind"] for e in res["real"]["events"]}
    for name, _ in VARIANTS:
        sim = res["sim"][name]
        assert sim["figures"]["peak"] == 2 and sim["figures"]["final"] == 0, name
        assert sim["mae_nodes"] <= res["error_budget"][name]["bound"], name
    assert res["sim"]["aligned"]["first_tick_s"] == 1.9
    eb = res["error_budget"]
    assert eb["ramp_node_s"] == 1.5 and eb["poll_node_s"] == 2.0 and eb["first_launch_node_s"] == 10
    # replaying the real iterations removes the scale-down phase term
    assert eb["replayed"]["bound"] < eb["aligned"]["bound"]
    assert res["real_raw"]["samples"] is res["real"]["samples"]


def test_compare_without_a_launch_or_iterations_reuses_the_default_phase():
    res = compare(real_run(events=[]), {**PARAMS, "pod_start_s": 1.5}, ray_version="test")
    assert res["params"]["pod_start_s"] == 1.5
    assert res["sim"]["aligned"] is res["sim"]["default_phase"] is res["sim"]["replayed"]


def test_the_report_shows_calibration_timelines_and_the_table():
    res = compare(real_run(), dict(PARAMS), ray_version="test")
    text = report(res)
    assert text.startswith("calibrated: loop_s=5 (AUTOSCALER_UPDATE_INTERVAL_S); pod_start_s=2.95")
    assert "real decisions: add 2 @ 1.90s, remove 2 @ 42.20s" in text
    assert side_by_side(res) in text and table(res) in text
    head, *rows = table(res).splitlines()
    assert head.split() == ["real", "sim", "sim:real", "ticks", "sim:tick@loop_s"]
    assert rows[0].split()[-4:] == ["2", "2", "2", "2"]
    assert side_by_side(res).splitlines()[1].split()[:2] == ["0.0", "0"]


# -- the fake cluster ----------------------------------------------------------------------------

def test_the_fake_cluster_config_declares_one_worker_type_and_a_zero_cpu_head():
    cfg = FakeAutoscalingCluster({"CPU": 2.0}, max_workers=3, idle_timeout_s=15.0, loop_s=5).config("1.2.3.4:6379")
    assert cfg["provider"]["gcs_address"] == "1.2.3.4:6379" and cfg["provider"]["head_node_id"] == FAKE_HEAD_NODE_ID
    assert cfg["available_node_types"]["ray.head.default"]["resources"] == {"CPU": 0}
    worker = cfg["available_node_types"][NODE_TYPE]
    assert worker["resources"]["CPU"] == 2.0 and worker["max_workers"] == 3 and worker["min_workers"] == 0
    assert cfg["idle_timeout_minutes"] == 0.25 and cfg["upscaling_speed"] == 1000.0


def test_the_fake_cluster_stops_what_names_its_temp_dir_and_descendants_by_pid(tmp_path):
    """A stand-in for the head: a process naming the temp dir with a child that does not; `stop`
    kills both (through tuner.processes), and an unrelated process survives."""
    temp_dir = str(tmp_path / "rvas-standin")
    tree = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
            " time.sleep(60)")
    head = subprocess.Popen([sys.executable, "-c", tree, temp_dir])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        cluster = FakeAutoscalingCluster({"CPU": 2.0}, max_workers=1, idle_timeout_s=1.0, loop_s=1, temp_dir=temp_dir)
        deadline = time.monotonic() + 10
        while len(cluster.our_processes()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        found = cluster.our_processes()
        assert head.pid in {r.pid for r in found} and len(found) == 2
        cluster.remember()
        started = time.monotonic()
        cluster.stop()
        assert time.monotonic() - started < 8  # SIGTERM was enough
        assert head.wait(5) is not None and cluster.leftover() == []
        assert other.poll() is None
    finally:
        for p in (head, other):
            p.kill()
            p.wait(5)
