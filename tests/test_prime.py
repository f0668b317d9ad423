"""A trial's defined start: every multiplexed model it asks for is loaded once before the
warm-up (tuner.prime), on replicas Serve starts fresh (tuner.deploy.with_fresh)."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from tests.cpu_config import cpu_config
from tests.test_sim_app import FIXED, calibration, plan
from tuner import deploy, prime
from tuner.calibration_file import accelerator_tables
from tuner.sim.run import simulate


def arrivals(adapters: list[str | None], t: list[float] | None = None) -> pd.DataFrame:
    t = t if t is not None else [float(i) for i in range(len(adapters))]
    return pd.DataFrame({"t": t, "path": ["/v1/completions" if a else "/rag" for a in adapters], "adapter": adapters,
                         "body": [json.dumps({"model": a, "n": i}) for i, a in enumerate(adapters)]})


def test_each_model_once_least_requested_first_ending_at_the_warm_up():
    rows = prime.prime_rows(arrivals(["b", None, "a", "b", "c", "b", "a", None]), horizon_s=100)
    assert rows["adapter"].tolist() == ["c", "a", "b"]  # 1, 2 and 3 requests: the LRU keeps the last
    # each is the first arrival that asks for it, with its own request
    assert [json.loads(b)["n"] for b in rows["body"]] == [4, 2, 0]
    assert rows["t"].tolist() == pytest.approx([-3 * prime.GAP_S, -2 * prime.GAP_S, -prime.GAP_S])
    assert prime.lead_s(rows) == pytest.approx(3 * prime.GAP_S)


def test_ties_go_by_id_and_models_past_the_horizon_are_left_out():
    rows = prime.prime_rows(arrivals(["z", "y", "x"], t=[0.0, 1.0, 50.0]), horizon_s=10)
    assert rows["adapter"].tolist() == ["y", "z"]


def test_a_trial_without_multiplexed_models_primes_nothing():
    assert prime.prime_rows(arrivals([None, None]), horizon_s=10).empty
    assert prime.prime_rows(pd.DataFrame({"t": [0.0], "path": ["/rag"]}), horizon_s=10).empty


def test_the_plan_primes_over_its_warm_up_and_window_unless_told_not_to(tmp_path):
    from tuner.plan import make_plan

    p = make_plan(config=None, serve_config=cpu_config(), scenario="steady", target="p99<1s", duration_s=2.0,
                  warmup_s=5.0, out=tmp_path, check=False)
    a = arrivals(["a", "b", "c"], t=[0.0, 3.0, 6.0])
    assert p.prime and p.prime_rows(a)["adapter"].tolist() == ["a", "b"]  # warm-up and window: the first 5 s
    assert replace(p, prime=False).prime_rows(a).empty


def test_fresh_marks_only_the_named_deployments_with_a_valid_config():
    from ray.serve.schema import ServeDeploySchema

    cfg = cpu_config()
    out = deploy.with_fresh(cfg, frozenset({"MultiLoRAModel"}), "42")
    deps = {d["name"]: d for a in out["applications"] for d in a["deployments"]}
    assert deps["MultiLoRAModel"]["ray_actor_options"]["runtime_env"]["env_vars"] == {deploy.FRESH_ENV: "42"}
    assert all("runtime_env" not in d.get("ray_actor_options", {}) for n, d in deps.items() if n != "MultiLoRAModel")
    assert out != cfg and deploy.with_fresh(cfg, frozenset(), "42") == cfg  # the input is left as it was
    ServeDeploySchema.model_validate(out)
    assert deploy.start_replicas(out) == deploy.start_replicas(cfg)


def test_primed_replicas_answer_the_window_without_loading_a_model():
    """Two replicas of four slots and eight adapters: primed, every adapter is loaded before the
    window (Serve sends a new model to the replica holding the fewest); cold, the first request
    of each pays the load."""
    p = plan(120, 2.0, paths=("/v1/completions",), adapters=8)
    cal = calibration(MultiLoRAModel={"service_ms": ((1, 50.0),), "concurrency": 1, "load_ms": 400.0})
    run = dict(tables=accelerator_tables(cpu_config()), duration_s=40, warmup_s=2)
    primed = simulate(cpu_config(), p, cal, FIXED, prime=prime.prime_rows(p, 40), **run).records
    cold = simulate(cpu_config(), p, cal, FIXED, **run).records
    assert primed["latency_ms"].max() < 400 <= cold["latency_ms"].max()
    assert len(primed) == len(cold) == (p["t"] < 40).sum()  # priming is not measured


class _Answers(BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self):  # noqa: N802 - the standard library's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append((self.path, body))
        self.send_response(500 if body.get("model") == "bad" else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_send_posts_each_row_and_counts_what_failed():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        rows = prime.prime_rows(arrivals(["a", "bad", "b", "b"]), horizon_s=10)
        out = prime.send(f"http://127.0.0.1:{server.server_port}", rows, timeout_s=10)
    finally:
        server.shutdown()
        server.server_close()
    assert out["sent"] == 3 and out["failed"] == 1 and "500" in out["first_failure"]
    assert sorted(b["model"] for _, b in _Answers.seen) == ["a", "b", "bad"]
    assert {p for p, _ in _Answers.seen} == {"/v1/completions"}
    assert out["seconds"] >= 2 * prime.GAP_S  # on the rows' schedule, not all at once
