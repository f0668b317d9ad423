"""Scaling of an emulated bottleneck stage: the highest rate at p99 <= 500 ms with 1, 2 and 4 replicas.

With the stack running (`tuner stack up`), deploys the shipped config with the stage fixed at k
replicas (every other deployment as shipped), then searches the highest steady open-loop rate
of the stage's route whose p99 stays within the bound: rates rise by `--step` until one misses,
then bisect `--bisect` times between the last pass and the first miss. Each probe is a plain
run of the project's generator (`locust -f scenarios/steady.py`) from the start a trial has
(new replicas of the stage, each adapter of the run loaded once: tuner.prime), after
`--warmup` seconds of the same rate. Efficiency is throughput(k) / (k x throughput(1)).

    .venv/bin/python scripts/bench_scaling.py [--stage MultiLoRAModel --mix lora=1] [--replicas 1,2,4] \
        [--set max_models_per_replica=16] [--compute accelerator=h100 --compute stage=llama-3.1-8b-lora]

`--as-shipped` measures the shipped config itself (every deployment autoscaling as shipped, the
default mix): with `--bound-ms 2000` its capacity, the rate "steady at 80 % of capacity" in
scripts/bench_fidelity.py is set from (the knee: light load gives a p99 near 0.55 s; an
answered/offered rate is no test here, as a 40 s Poisson run offers +-8 % of its mean).
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
from pathlib import Path

import yaml

from stack_runs import running_stack

from tuner import deploy  # noqa: E402
from tuner.optimize.space import apply  # noqa: E402
from tuner.paths import REPO, SERVE_CONFIG  # noqa: E402
from tuner.plan import make_plan  # noqa: E402
from tuner.trial import deploy_for_trial, prime_models  # noqa: E402
from target_app.user_config import check_deployment  # noqa: E402


def probe(rate: float, a: argparse.Namespace, out: Path, stack, cfg: dict) -> dict:
    """One steady run at `rate` from a trial's defined start (the config deployed, the stage on
    new replicas, the run's adapters primed: tuner.trial), then a warm-up: the exact overall p99
    and throughput."""
    plan = make_plan(config=None, serve_config=cfg, scenario="steady", target=f"p99<{a.bound_ms:g}ms",
                     scenario_args=("--rate", f"{rate:g}", "--mix", a.mix), duration_s=a.seconds, warmup_s=a.warmup,
                     seed=a.seed, out=out, check=False)
    deploy_for_trial(stack, cfg, 300)
    prime_models(plan, stack.serve_url(cfg))
    for seconds, folder in ((a.warmup, out / "warmup"), (a.seconds, out)):
        cmd = [str(Path(sys.executable).parent / "locust"), "-f", "scenarios/steady.py", "--headless",
               "--host", "http://127.0.0.1:8000", "--rate", f"{rate:g}", "--mix", a.mix, "-t", f"{seconds:g}s",
               "--duration", f"{seconds:g}", "--drain", "10", "--out", str(folder), "--max-lag-ms", "1000",
               "--seed", str(a.seed)]
        subprocess.run(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    summary = json.loads(max(out.glob("*/summary.json")).read_text())
    o = summary["overall"]
    ok = o["errors"] == 0 and o["dropped"] == 0 and o["unfinished"] == 0
    lags = [g["lag_ms_p99"] for g in summary["generator_health"].values() if isinstance(g, dict) and "lag_ms_p99" in g]
    return {"rate": rate, "p99_ms": o.get("latency_ms_p99"), "throughput_rps": o["throughput_rps"], "ok": ok,
            "lag_p99_ms": max(lags, default=None)}


def passes(p: dict, a: argparse.Namespace) -> bool:
    """A probe answered in full within the bound."""
    return p["ok"] and p["p99_ms"] <= a.bound_ms


def highest_rate(a: argparse.Namespace, k: int, out: Path, stack, cfg: dict) -> tuple[float, list[dict]]:
    """The highest rate whose p99 meets the bound, from `--start` requests/s a replica up."""
    probes, good, bad, rate = [], 0.0, None, a.start * k
    while bad is None and rate <= a.max_rate:
        p = probe(rate, a, out / f"r{rate:g}", stack, cfg)
        probes.append(p)
        if passes(p, a):
            good, rate = rate, rate * a.step
        else:
            bad = rate
    for _ in range(a.bisect if bad is not None else 0):
        mid = round((good + bad) / 2, 2)
        p = probe(mid, a, out / f"r{mid:g}", stack, cfg)
        probes.append(p)
        good, bad = (mid, bad) if passes(p, a) else (good, mid)
    passing = [p for p in probes if p["rate"] == good]
    return (passing[0]["throughput_rps"] if passing else 0.0), probes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", default="MultiLoRAModel")
    ap.add_argument("--mix", default="lora=1", help="the stage's route, as the generator's --mix")
    ap.add_argument("--replicas", default="1,2,4")
    ap.add_argument("--set", action="append", default=[], metavar="PARAM=VALUE",
                    help="a search-space parameter of the stage held fixed, e.g. max_models_per_replica=16")
    ap.add_argument("--compute", action="append", default=[], metavar="FIELD=VALUE",
                    help="a field of the stage's user_config.compute instead of the shipped one, e.g. accelerator=h100")
    ap.add_argument("--bound-ms", type=float, default=500)
    ap.add_argument("--as-shipped", action="store_true", help="the shipped config as it is (no stage fixed; k = 1)")
    ap.add_argument("--start", type=float, default=1.0, help="the first rate tried, requests/s per replica")
    ap.add_argument("--step", type=float, default=1.5)
    ap.add_argument("--bisect", type=int, default=2)
    ap.add_argument("--max-rate", type=float, default=14.0, help="this host's ceiling (BENCHMARKS.md, Ceiling)")
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--warmup", type=float, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--state-dir", type=Path, default=REPO / ".tuner/stack")
    ap.add_argument("--out", type=Path, default=REPO / "runs/bench-scaling")
    a = ap.parse_args()
    stack = running_stack(a.state_dir)
    shipped = deploy.load_serve_config(SERVE_CONFIG)
    results = {}
    for k in (1,) if a.as_shipped else (int(x) for x in a.replicas.split(",")):
        fixed = {f"serve.{a.stage}.{kv.split('=')[0]}": yaml.safe_load(kv.split("=", 1)[1]) for kv in a.set}
        cfg = copy.deepcopy(shipped) if a.as_shipped else \
            apply(copy.deepcopy(shipped), {**fixed, f"serve.{a.stage}.num_replicas": k})
        stage = next(d for app in cfg["applications"] for d in app["deployments"] if d["name"] == a.stage)
        stage["user_config"]["compute"].update({kv.split("=")[0]: yaml.safe_load(kv.split("=", 1)[1]) for kv in a.compute})
        check_deployment(a.stage, stage)
        rps, probes = highest_rate(a, k, a.out / f"k{k}", stack, cfg)
        results[k] = {"throughput_rps": rps, "probes": probes}
        tried = ", ".join(f"{p['rate']:g}: {p['p99_ms']:.0f} ms" for p in probes)
        label = "the shipped config" if a.as_shipped else f"{a.stage} x{k}"
        print(f"{label}: {rps:.2f} req/s at p99 <= {a.bound_ms:g} ms ({tried})", flush=True)
    deploy_for_trial(stack, shipped, 300)
    one = results[min(results)]["throughput_rps"]
    for k, r in results.items():
        r["efficiency"] = r["throughput_rps"] / (k * one) if one else None
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "scaling.json").write_text(json.dumps({"stage": a.stage, "mix": a.mix, "set": a.set,
                                                   "compute": a.compute, "results": results}, indent=2))
    print(f"\n| {a.stage} replicas | highest rate at p99 <= {a.bound_ms:g} ms, req/s | efficiency |\n|---|---|---|")
    for k, r in results.items():
        print(f"| {k} | {r['throughput_rps']:.2f} | {r['efficiency']:.2f} |")


if __name__ == "__main__":
    main()
