"""The tuner's outcome, proven for real (BENCHMARKS.md, "Outcome"): per scenario, a hybrid
`tuner optimize` on the running stack as the main job runs it, then every configuration that
matters measured again `--repeat` times on the real stack, and its medians compared:

- Ray's defaults, the seed article's settings (the shipped config's), and the static replica
  sweep: every searched deployment at k replicas, k rising until the median meets the target
  (what an engineer does by hand);
- the tuned configuration (the search's answer), and the same on traffic it was never tuned
  on (`HELD_OUT`: another seed; for the trace, also that seed on a later window of the trace).

The saving is the tuned configuration's median cost against the cheapest of the baselines whose
median p99 meets the target. Costs are real: the replicas' timelines from Prometheus at the
default prices.

    .venv/bin/tuner stack up && .venv/bin/python scripts/bench_outcome.py [--only burst] [--out runs/outcome]
    .venv/bin/python scripts/bench_outcome.py --reuse runs/outcome    # the tables again, measuring nothing
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml  # noqa: E402

from tuner import deploy  # noqa: E402
from tuner.optimize.space import load_space  # noqa: E402
from tuner.optimize.study import STATIC, static_baselines  # noqa: E402
from tuner.target import parse_target  # noqa: E402

SCENARIOS = ("burst", "diurnal", "trace_replay")
# Traffic the search never saw, as (label, folder, options): another seed of arrivals and
# request mix; for the trace, also a window half an hour into it (the search plays its first
# minutes), which carries about twice the requests.
SEED = ("seed 1", "tuned-held-out", ["--seed", "1"])
HELD_OUT = {"burst": [SEED], "diurnal": [SEED],
            "trace_replay": [SEED, ("seed 1, window at 1,800 s", "tuned-held-out-window",
                                    ["--seed", "1", "--trace-start", "1800"])]}
HELD = "tuned, held out"  # the rows' label, before the held-out traffic's own
MAX_STATIC = 6


def tuner(*args: str, log: Path) -> int:
    r = subprocess.run([sys.executable, "-m", "tuner.cli", *args], capture_output=True, text=True)
    log.write_text(r.stdout + r.stderr)
    if r.returncode not in (0, 1):
        raise SystemExit(f"tuner {args[0]} exited {r.returncode}, see {log}")
    return r.returncode


def search_args(a: argparse.Namespace, scenario: str, out: Path) -> list[str]:
    """`tuner optimize` as scripts/main.sh runs it; a search that was cut off resumes its study."""
    resume = ["--resume"] if out.is_dir() and any(out.iterdir()) else []
    return ["optimize", "--scenario", scenario, "--target", a.target, "--out", str(out), "--duration", f"{a.duration:g}",
            "--warmup", f"{a.warmup:g}", "--time-budget", f"{a.time_budget:g}", *resume]


def measure_args(a: argparse.Namespace, scenario: str, config: Path, out: Path, extra: list[str] = ()) -> list[str]:
    """`tuner run` of one configuration, `--repeat` times; what a cut-off run left is replaced."""
    return ["run", "--config", str(config), "--scenario", scenario, "--target", a.target, "--repeat", str(a.repeat),
            "--duration", f"{a.duration:g}", "--warmup", f"{a.warmup:g}", "--out", str(out), "--force", "--no-report",
            *extra]


def search(a: argparse.Namespace, scenario: str, out: Path) -> dict:
    """The hybrid search as scripts/main.sh runs it; its summary.json and wall time."""
    if not (out / "summary.json").exists():
        t = time.perf_counter()
        tuner(*search_args(a, scenario, out), log=out.with_suffix(".log"))
        (out / "wall_s").write_text(f"{time.perf_counter() - t:.1f}")
    return json.loads((out / "summary.json").read_text())


def measure(a: argparse.Namespace, scenario: str, config: Path, out: Path, extra: list[str] = ()) -> dict:
    """`--repeat` real runs of one configuration: median cost/h and the target's figure (`p99_ms`:
    its first clause, e.g. p99 or ttft_p99), and whether the median meets."""
    if not (out / "result.json").exists():
        tuner(*measure_args(a, scenario, config, out, extra), log=out.with_suffix(".log"))
    res = json.loads((out / "result.json").read_text())
    spread = res["repeat"]["spread"] if res.get("repeat") else {}
    costs = [v for v in (spread.get("cost", {}).get("values") or []) if v is not None]
    hours = res["cost"]["window_s"] / 3600
    clause = res["target"]["clauses"][0]
    p99s = spread.get(f"target {target_metric(a.target)}", {}).get("values") or [clause["client"]]
    return {"cost_per_hour": statistics.median(costs) / hours if costs else res["cost"]["cost_per_hour"],
            "p99_ms": clause["client"], "p99_runs": p99s, "met": bool(clause["passed"]), "status": res["status"]}


def config_of(search_dir: Path, entry: dict, scenario: str) -> Path:
    """The Serve config a baseline's real run (a single one) deployed."""
    return search_dir / entry["runs"][scenario] / "serve_config.yaml"


def tuned_config(search_dir: Path, summary: dict) -> Path | None:
    """The search's answer as it hands it to the user (a candidate's runs are repeats, so no
    one run folder is its config)."""
    best = summary.get("best")
    return search_dir / best["serve_config"] if best else None


def case(a: argparse.Namespace, scenario: str) -> dict:
    root = a.out / scenario
    root.mkdir(parents=True, exist_ok=True)
    summary = search(a, scenario, root / "search")
    found = {label: summary["baselines"][label] for label in ("Ray defaults", "seed article")
             if summary["baselines"].get(label)}
    configs = {label: config_of(root / "search", e, scenario) for label, e in found.items()}
    rows = {label: measure(a, scenario, cfg, root / "confirm" / label.replace(" ", "-")) for label, cfg in configs.items()}
    shipped = deploy.load_serve_config(configs["seed article"])
    space = load_space(None, shipped)
    for k in range(1, MAX_STATIC + 1):  # the sweep by hand: more replicas until the median meets
        (label, cfg), = static_baselines(space, shipped, range(k, k + 1)).items()
        path = root / "confirm" / f"{STATIC}-{k}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        rows[label] = measure(a, scenario, path, root / "confirm" / f"{STATIC}-{k}")
        if rows[label]["met"]:
            break
    tuned = tuned_config(root / "search", summary)
    if tuned:
        rows["tuned"] = measure(a, scenario, tuned, root / "confirm" / "tuned")
        for label, folder, options in HELD_OUT[scenario]:
            rows[f"{HELD} ({label})"] = measure(a, scenario, tuned, root / "confirm" / folder, options)
    wall = root / "search" / "wall_s"
    return {"rows": rows, "hybrid": summary.get("hybrid"), "trials": summary.get("trials"),
            "search_wall_s": float(wall.read_text()) if wall.exists() else None}


def real_runs(r: dict) -> int | str:
    """The search's real runs as it counted them (a summary written before it counted them: one
    per baseline trial, `real_repeat` per candidate)."""
    h, real = r["hybrid"] or {}, (r["trials"] or {}).get("real")
    if h.get("real_runs") is not None:
        return h["real_runs"]
    if real is None or "real_candidates" not in h:
        return "-"
    return real - h["real_candidates"] + h["real_candidates"] * h.get("real_repeat", 1)


def target_metric(target: str) -> str:
    """The figure the first clause of `target` judges, as results name it (p99, ttft_p99)."""
    return parse_target(target).clauses[0].name


def table(results: dict[str, dict], target: str, repeat: int) -> str:
    metric = target_metric(target)
    lines = [f"| scenario | configuration | cost/h (median) | {metric} ms (median; runs) | `{target}` |",
             "|---|---|---|---|---|"]
    for scenario, r in results.items():
        for label, m in r["rows"].items():
            runs = ", ".join(f"{v:,.0f}" for v in m["p99_runs"] if v is not None)
            lines.append(f"| {scenario} | {label} | {m['cost_per_hour']:.2f} | {m['p99_ms']:,.0f} ({runs}) "
                         f"| {'met' if m['met'] else 'missed'} |")
    lines += ["", f"| scenario | cheapest baseline that meets (median of {repeat}) | tuned | saving | held out "
                  "| real runs in the search | simulator winners failed | correction | search wall min |",
              "|---|---|---|---|---|---|---|---|---|"]
    for scenario, r in results.items():
        rows = r["rows"]
        meeting = {k: v for k, v in rows.items() if not k.startswith("tuned") and v["met"]}
        cheapest = min(meeting, key=lambda k: meeting[k]["cost_per_hour"]) if meeting else None
        tuned = rows.get("tuned")
        held = {k[len(HELD):].strip(" ()"): v for k, v in rows.items() if k.startswith(HELD)}
        saving = (1 - tuned["cost_per_hour"] / meeting[cheapest]["cost_per_hour"]
                  if tuned and tuned["met"] and cheapest else None)
        h, wall = r["hybrid"] or {}, r["search_wall_s"]
        base = f"{cheapest} ({meeting[cheapest]['cost_per_hour']:.2f}/h)" if cheapest else "none"
        tuned_cell = f"{tuned['cost_per_hour']:.2f}/h, {metric} {tuned['p99_ms']:,.0f} ms" if tuned else "-"
        held_cell = "; ".join(f"{label}: {metric} {m['p99_ms']:,.0f} ms, {'met' if m['met'] else 'missed'}"
                              for label, m in held.items()) or "-"
        factors = ", ".join(f"x{v:.2f}" for v in (h.get("correction") or {}).values()) or "-"
        lines.append(f"| {scenario} | {base} | {tuned_cell} | {'-' if saving is None else f'{saving:.0%}'} | {held_cell} "
                     f"| {real_runs(r)} "
                     f"| {h.get('sim_winners_failed', '-')} of {h.get('real_candidates', '-')} | {factors} "
                     f"| {'-' if wall is None else f'{wall / 60:.1f}'} |")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/outcome"))
    ap.add_argument("--target", default="p99<500ms")
    ap.add_argument("--duration", type=float, default=45.0, help="as the main job")
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--time-budget", type=float, default=900.0, help="the search's, as the main job")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    ap.add_argument("--reuse", type=Path, default=None, help="tabulate an earlier run of this")
    return ap


def main() -> None:
    a = parser().parse_args()
    if a.reuse:
        a.out = a.reuse
    results = {s: case(a, s) for s in a.only.split(",")}
    (a.out / "outcome.json").write_text(json.dumps(results, indent=1))
    print(table(results, a.target, a.repeat))


if __name__ == "__main__":
    main()
