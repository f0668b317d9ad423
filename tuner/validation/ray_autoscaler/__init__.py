"""The simulator's Ray autoscaler against the real one (Ray's fake multi-node provider).

Real side (`fake_cluster`, `real_burst`, `ray_logs`): a Ray head with the real autoscaler v2
(as KubeRay runs it: `RAY_enable_autoscaler_v2`, `upscaling_speed` 1000 = upscalingMode Default)
and one declared worker type, whose "pods" are extra raylets the fake provider starts on this
machine. A driver creates N actors of {"CPU": c} at t=0 (a burst of Serve replicas that fits on
no node: the head offers 0 CPU), keeps them `hold_s` seconds, then kills them; alive worker
nodes (`ray.nodes()`) are polled every 0.5 s, with the pending demand the GCS holds for the
autoscaler. The autoscaler's decisions and iteration times come from its monitor.log, exact
node join/death times from gcs_server.out.

Model side (`sim_burst`, `calibration`, `compare`): the same demand on `tuner.sim.cluster.Cluster`
+ `RayAutoscalerLoop` on the project's Engine, with the two timings the model cannot know
calibrated from the real run: `loop_s` (AUTOSCALER_UPDATE_INTERVAL_S, default 5, in
ray-project/ray@ray-2.60.0 python/ray/autoscaler/_private/constants.py; set here for the real
autoscaler) and `pod_start_s` (measured: from the autoscaler's "Adding N node(s)" decision to
the node's registration in the GCS; median over the nodes). Three variants:
  sim              the loop's ticks phase-aligned to the real iteration that first launched;
  sim:real ticks   the loop's iteration run at the real iterations' times (isolates the policy);
  sim:tick@loop_s  the loop as it starts by itself (first tick loop_s after t=0).
Reported (`timelines`, `report`, `plot`): the timelines side by side, peak, time to peak,
scale-down after release, node-count MAE on a 0.5 s grid, and an error budget
(`compare.error_budget`). `run` ties it together; `scripts/validate_ray_autoscaler.py` is its
command line.

Modules: fake_cluster (start/stop the real head), real_burst (the burst on it, recorded),
ray_logs (Ray's log lines to events), sim_burst (the burst on the simulator), timelines and
calibration (pure: step timelines, figures, MAE; pod start and iteration times from the real
run), compare (pure: the model calibrated on a real run, the error budget), report (pure text),
plot (PNG), run (real run, model, output files).
"""
