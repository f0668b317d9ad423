"""An accelerator table for a GPU class nobody here can measure, derived from the measured H100's.

Each measured point splits into the device's work and the rest. The work is the larger of the
point's arithmetic at the H100's measured matmul rate and its bytes at the H100's measured copy
bandwidth (the roofline, both in h100.json's meta); the rest (Python, kernel launches, peft's
host-side work) is what the measurement shows beyond it and does not depend on the card. The
target class keeps the rest and does the work at the H100's measured rates scaled by the two
cards' datasheet ratios. Adapter loads keep their host work and move the adapter's bytes over
the target's PCIe link instead of the H100's.

    .venv/bin/python scripts/derive_accelerator.py --target l4   # writes target_app/accelerators/l4.json

Sources of the ratios (datasheets): NVIDIA H100 SXM5: 3.35 TB/s HBM3, 989 TFLOP/s dense BF16,
PCIe Gen5 x16; NVIDIA L4: 300 GB/s GDDR6, 121 TFLOP/s dense FP16/BF16 (242 with sparsity),
PCIe Gen4 x16. A link's usable host-to-device rate is taken as 0.8 of its nominal 64 / 32 GB/s.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Run as a file (`python scripts/...`): this checkout's packages first, whatever is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from target_app.paths import ACCELERATOR_TABLES  # noqa: E402
from tuner.paths import REPO  # noqa: E402

H100 = {"bandwidth_GBps": 3350, "bf16_TFLOPs": 989, "pcie_GBps": 64 * 0.8}
TARGETS = {
    "l4": {"name": "NVIDIA L4 (derived)", "bandwidth_GBps": 300, "bf16_TFLOPs": 121, "pcie_GBps": 32 * 0.8},
}

# Per stage: matmul parameters (2 FLOP each per token), tokens per item, weight bytes read once
# per forward, and bytes per item beyond them (a decode step reads its sequence's KV cache).
# Parameter counts from the architectures' configs (the models measure_accelerators.py builds).
_LLAMA_1B = dict(matmul_params=1.235e9, weight_bytes=2 * 1.236e9, kv_bytes_per_token=2 * 16 * 8 * 64 * 2)
_LLAMA_8B = dict(matmul_params=7.50e9, weight_bytes=2 * 8.03e9, kv_bytes_per_token=2 * 32 * 8 * 128 * 2)
CONTEXT_TOKENS = 128  # the decode rows' cache per sequence
STAGES = {
    "minilm-l6-embed-seq64": dict(matmul_params=10.6e6, tokens=64, weight_bytes=2 * 22.7e6),
    "bge-reranker-large-seq256": dict(matmul_params=302e6, tokens=256, weight_bytes=2 * 560e6),
    "bert-base-cls-seq128": dict(matmul_params=85e6, tokens=128, weight_bytes=2 * 110e6),
    "llama-3.2-1b-lora-prefill": dict(**_LLAMA_1B, tokens=1, decode=False),
    "llama-3.2-1b-lora-decode": dict(**_LLAMA_1B, tokens=1, decode=True),
    "llama-3.1-8b-lora-prefill": dict(**_LLAMA_8B, tokens=1, decode=False),
    "llama-3.1-8b-lora-decode": dict(**_LLAMA_8B, tokens=1, decode=True),
}
ADAPTER_BYTES = {"llama-3.2-1b-lora-load": 45.1e6, "llama-3.1-8b-lora-load": 167.8e6}  # measured files
HOST_ONLY = ("-swap",)  # switching resident adapters is host work alone


def work_s(stage: dict, batch: int, tflops: float, gbps: float) -> float:
    """Seconds of device work for one forward of `batch` items at these rates."""
    flops = 2 * stage["matmul_params"] * stage["tokens"] * batch
    moved = stage["weight_bytes"] + (batch * CONTEXT_TOKENS * stage["kv_bytes_per_token"] if stage.get("decode") else 0)
    return max(flops / (tflops * 1e12), moved / (gbps * 1e9))


def derive(source: dict, target: dict) -> dict:
    roof = source["meta"]["roofline"]
    # The copy's rate counts every byte it moved (read plus written), as a forward's reads are counted.
    h_gbps, h_tflops = roof["copy_d2d_GBps_read_plus_write"], roof["matmul_bf16_TFLOPs"]
    t_gbps = h_gbps * target["bandwidth_GBps"] / H100["bandwidth_GBps"]
    t_tflops = h_tflops * target["bf16_TFLOPs"] / H100["bf16_TFLOPs"]
    cols = source["columns"]
    rows = []
    for raw in source["rows"]:
        r = dict(zip(cols, raw))
        stage, batch = STAGES.get(r["model"]), int(r["batch"])
        if r["dtype"] == "float32":
            continue  # FP32 without tensor cores: no datasheet ratio stated here; use float16 rows
        scale = {}
        for stat in ("median_ms", "p90_ms"):
            ms = float(r[stat])
            if stage is not None:
                h_work = work_s(stage, batch, h_tflops, h_gbps) * 1000
                ms = max(0.0, ms - h_work) + work_s(stage, batch, t_tflops, t_gbps) * 1000
            elif r["model"] in ADAPTER_BYTES:
                b = ADAPTER_BYTES[r["model"]]
                ms += (b / (target["pcie_GBps"] * 1e9) - b / (H100["pcie_GBps"] * 1e9)) * 1000
            elif not r["model"].endswith(HOST_ONLY):
                raise SystemExit(f"no shape for stage {r['model']!r}: add it to STAGES")
            scale[stat] = round(ms, 3)
        rows.append([r["model"], r["dtype"], batch, scale["median_ms"], scale["p90_ms"],
                     round(batch / scale["median_ms"] * 1000, 1)])
    return {"meta": {"gpu": target["name"], "derived_from": "h100.json", "method": __doc__.split("\n\n")[0],
                     "ratios": {"bandwidth": target["bandwidth_GBps"] / H100["bandwidth_GBps"],
                                "bf16_compute": target["bf16_TFLOPs"] / H100["bf16_TFLOPs"],
                                "pcie_GBps": target["pcie_GBps"]},
                     "datasheets": {"H100 SXM5": H100, "target": target}},
            "columns": cols, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", choices=sorted(TARGETS), default="l4")
    ap.add_argument("--source", type=Path, default=ACCELERATOR_TABLES / "h100.json")
    a = ap.parse_args()
    out = derive(json.loads(a.source.read_text()), TARGETS[a.target])
    path = ACCELERATOR_TABLES / f"{a.target}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"| stage | batch | H100 ms | {a.target} ms |\n|---|---|---|---|")
    h = {(r[0], r[1], r[2]): r[3] for r in json.loads(a.source.read_text())["rows"]}
    for r in out["rows"]:
        print(f"| {r[0]} ({r[1]}) | {r[2]} | {h[(r[0], r[1], r[2])]:.2f} | {r[3]:.2f} |")
    print(f"\nwrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
