"""The simulator's inputs that live in files, read here at the edge so tuner/sim/ opens none:
the calibration files (`--calibration`: the shipped ones by name from tuner/data/calibration/,
any other by path, and `gpu-h100`, the local one with its embedding and rerank stages from the
H100 accelerator table), and the accelerator tables a Serve config's emulated deployments replay."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from target_app.compute import ComputeConfig, accelerator_rows
from target_app.paths import ACCELERATOR_TABLES
from target_app.topology import MULTIPLEXED
from target_app.user_config import LORA_TABLES, compute_tables
from tuner.errors import UsageError, first_problem, read_yaml
from tuner.paths import CALIBRATIONS
from tuner.sim.calibration import Calibration, with_gpu_stages
from tuner.sim.emulated import EmulatedTables

H100_TABLE = ACCELERATOR_TABLES / "h100.json"


def load_calibration(name_or_path: str | Path | None = None) -> Calibration:
    """A calibration by shipped name (`local`, `gpu-h100`) or file path (UsageError on bad input)."""
    name = str(name_or_path or "local")
    if name == "gpu-h100":
        return with_gpu_stages(load_calibration("local"), list(accelerator_rows(H100_TABLE)), H100_TABLE.name)
    path = Path(name)
    if not path.suffix:
        path = CALIBRATIONS / f"{name}.yaml"
        if not path.is_file():
            shipped = ", ".join(sorted([p.stem for p in CALIBRATIONS.glob("*.yaml")] + ["gpu-h100"]))
            raise UsageError(f"--calibration: no calibration {name!r}; choose one of {shipped}, or a file")
    raw = read_yaml(path, "--calibration")
    try:
        return Calibration.model_validate(raw)
    except ValidationError as e:
        raise UsageError(f"--calibration {path}: {first_problem(e)}") from None


def accelerator_tables(serve_config: dict) -> EmulatedTables:
    """The tables of every deployment the config runs in `emulated` mode (ValueError naming the
    missing accelerator, stage or dtype); the LoRA model has its prefill, decode and load tables."""
    tables: EmulatedTables = {}
    for app in serve_config.get("applications") or []:
        for dep in app.get("deployments") or []:
            raw = (dep.get("user_config") or {}).get("compute")
            if isinstance(raw, dict) and raw.get("mode") == "emulated":
                suffixes = LORA_TABLES if dep["name"] in MULTIPLEXED else ("",)
                tables[dep["name"]] = compute_tables(ComputeConfig.model_validate(raw), suffixes)
    return tables


def save_calibration(cal: Calibration, path: Path) -> None:
    """Write a calibration as YAML (what load_calibration reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cal.model_dump(mode="json"), sort_keys=False))
