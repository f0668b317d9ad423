"""GPU service-time tables for the emulated accelerator stages (LoRA LLM prefill/decode/load, BERT).

Runs on the lent GPU machine with its python3 (torch + transformers + peft); models are built
from configs with random weights, since run time does not depend on weight values and the
device machine has no internet. Writes OUT/accelerators-h100.json (named after the card) in the
columns format of the other tables in target_app/accelerators/, rewriting it after every row so a
later failure keeps what was measured.

    python3 scripts/measure_accelerators.py --out DIR            # on the GPU
    .venv/bin/python scripts/measure_accelerators.py --quick --out /tmp/x   # CPU smoke run, tiny shapes
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from transformers import BertConfig, BertForSequenceClassification, LlamaConfig, LlamaForCausalLM

COLUMNS = ["model", "dtype", "batch", "median_ms", "p90_ms", "items_per_s"]
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LLAMA_SHAPES = {  # name: (hidden, layers, heads, kv heads, intermediate, tied embeddings)
    "llama-3.2-1b": (2048, 16, 32, 8, 8192, True),
    "llama-3.1-8b": (4096, 32, 32, 8, 14336, False),
}
KV_LEN = 128  # tokens already in each sequence's KV cache for the decode rows


class Table:
    """Rows plus meta, written to disk after every change."""

    def __init__(self, path: Path, meta: dict):
        self.path, self.meta, self.rows = path, meta, []
        self.meta.setdefault("errors", [])
        self.meta.setdefault("notes", {})
        self.save()

    def add(self, model, dtype, batch, med, p90, items):
        row = [model, str(dtype).replace("torch.", ""), batch, round(med, 3), round(p90, 3), round(items / (med / 1e3), 1)]
        self.rows.append(row)
        print(f"{model:32s} {row[1]:9s} {batch:5d} med {row[3]:9.3f} ms  p90 {row[4]:9.3f} ms  {row[5]:12.1f}/s", flush=True)
        self.save()

    def save(self):
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"meta": self.meta, "columns": COLUMNS, "rows": self.rows}, indent=1))
        tmp.replace(self.path)


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def stats(ms: list[float]) -> tuple[float, float]:
    return float(np.median(ms)), float(np.percentile(ms, 90))


def time_events(fn, warmup: int, reps: int, after=None) -> tuple[float, float]:
    """Median and p90 ms of fn(). Synchronise before each rep so every call starts from an idle
    GPU, as one request would: launch overhead counts, queueing behind the previous rep does not.
    `after` (e.g. trimming the KV cache back) runs outside the timed region."""
    for _ in range(warmup):
        fn()
        if after:
            after()
    sync()
    out = []
    for _ in range(reps):
        if torch.cuda.is_available():
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn()
            e.record()
            e.synchronize()
            out.append(s.elapsed_time(e))
        else:
            t0 = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t0) * 1e3)
        if after:
            after()
        sync()
    return stats(out)


def time_host(fn, warmup: int, reps: int, after=None) -> tuple[float, float]:
    """Host clock around fn() + synchronize: for work that is mostly host-side (file reads,
    module surgery, Python bookkeeping) with device copies inside."""
    for _ in range(warmup):
        fn()
        sync()
        if after:
            after()
    out = []
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        out.append((time.perf_counter() - t0) * 1e3)
        if after:
            after()
    return stats(out)


def free():
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def rooflines(dev, quick: bool) -> dict:
    """Two ceilings to scale the tables to another card: D2D copy bandwidth and bf16 GEMM rate."""
    n = (1 << 20) if quick else (1 << 28)  # 1 GiB of fp32 on the GPU
    src = torch.randn(n, device=dev)
    dst = torch.empty_like(src)
    med, _ = time_events(lambda: dst.copy_(src), 3, 5 if quick else 20)
    copy_gbps = 2 * src.numel() * src.element_size() / (med / 1e3) / 1e9  # read + write
    del src, dst
    k = 256 if quick else 8192
    a = torch.randn(k, k, device=dev, dtype=torch.bfloat16)  # random, never zeros (METHOD.md)
    b = torch.randn(k, k, device=dev, dtype=torch.bfloat16)
    med_mm, _ = time_events(lambda: a @ b, 3, 5 if quick else 20)
    del a, b
    free()
    return {"copy_d2d_GBps_read_plus_write": round(copy_gbps, 1), "copy_bytes": 2 * n * 4,
            "matmul_bf16_TFLOPs": round(2 * k**3 / (med_mm / 1e3) / 1e12, 1), "matmul_shape": [k, k, k]}


def build_llama(name: str, dev, dtype, quick: bool):
    h, layers, heads, kv, inter, tied = LLAMA_SHAPES[name]
    if quick:
        h, layers, heads, kv, inter = 64, 2, 4, 2, 128
    cfg = LlamaConfig(hidden_size=h, num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv,
                      intermediate_size=inter, vocab_size=1000 if quick else 128256, tie_word_embeddings=tied,
                      max_position_embeddings=131072, rope_theta=500000.0)
    # Build straight on the device in the target dtype: an 8B model in fp32 would need 32 GB first.
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(dev):
            base = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(old)
    base = base.to(dev, dtype).eval()
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=LORA_TARGETS, task_type="CAUSAL_LM")
    model = get_peft_model(base, lora).eval()
    # LoRA B starts at zero; give it values so the adapter is not a no-op (timing is the same either way).
    with torch.no_grad():
        for n_, p in model.named_parameters():
            if "lora_B" in n_:
                p.normal_(0, 0.01)
    return model, cfg


def llama_rows(table: Table, name: str, dev, dtype, quick: bool, wu: int, reps: int):
    model, cfg = build_llama(name, dev, dtype, quick)
    V = cfg.vocab_size
    table.meta["notes"][name] = {
        "params_base": sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n),
        "params_lora": sum(p.numel() for n, p in model.named_parameters() if "lora_" in n),
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
    }
    big = name == "llama-3.1-8b"
    groups = {
        "prefill": lambda: prefill(table, name, model, V, dev, dtype, [16, 32] if quick else [32, 64, 128, 256, 512], wu, reps),
        "decode": lambda: decode(table, name, model, V, dev, dtype, [1, 4] if quick else [1, 2, 4, 8, 16, 32], wu, reps),
        "load": lambda: load_swap(table, name, model, dtype, 2 if quick else 10 if big else 15),
    }
    for g, fn in groups.items():
        try:
            with torch.no_grad():
                fn()
        except Exception as exc:  # keep going: one failing group must not lose the others
            traceback.print_exc()
            table.meta["errors"].append(f"{name}-lora-{g}: {type(exc).__name__}: {exc}"[:500])
            table.save()
        free()
    del model
    free()


def prefill(table, name, model, V, dev, dtype, lengths, wu, reps):
    """One sequence of P prompt tokens; builds the KV cache and (as generate does) only the last
    position's logits, so the 128k-vocab head is not charged P times."""
    for P in lengths:
        ids = torch.randint(0, V, (1, P), device=dev)
        med, p90 = time_events(lambda: model(input_ids=ids, use_cache=True, logits_to_keep=1), wu, reps)
        table.add(f"{name}-lora-prefill", dtype, P, med, p90, P)


def decode(table, name, model, V, dev, dtype, batches, wu, reps):
    """One new token for each of B sequences with KV_LEN tokens already cached (DynamicCache,
    eager HF forward). The cache is cropped back to KV_LEN after each step, outside the timing."""
    for B in batches:
        ids = torch.randint(0, V, (B, KV_LEN), device=dev)
        cache = model(input_ids=ids, use_cache=True, logits_to_keep=1).past_key_values
        step = torch.randint(0, V, (B, 1), device=dev)
        # crop(-n) removes n tokens in both the older (max_length) and newer (tokens_to_remove) crop APIs.
        trim = lambda: cache.crop(-(cache.get_seq_length() - KV_LEN))  # noqa: E731
        med, p90 = time_events(lambda: model(input_ids=step, past_key_values=cache, use_cache=True, logits_to_keep=1),
                               wu, reps, after=trim)
        assert cache.get_seq_length() == KV_LEN, cache.get_seq_length()
        table.add(f"{name}-lora-decode", dtype, B, med, p90, B)
        del cache
        free()


def load_swap(table, name, model, dtype, reps):
    """(a) load_adapter from a page-cached local folder onto the GPU (deleted after each rep, so
    every rep is a real load); (b) set_adapter between two loaded adapters."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)  # saves the "default" adapter: adapter_config.json + safetensors
        size = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())
        table.meta["notes"][name]["adapter_bytes_on_disk"] = size
        med, p90 = time_host(lambda: model.load_adapter(tmp, adapter_name="probe"), 2, reps,
                             after=lambda: model.delete_adapter("probe"))
        table.add(f"{name}-lora-load", dtype, 1, med, p90, 1)
        model.load_adapter(tmp, adapter_name="other")
    names = iter(["other", "default"] * 1000)
    med, p90 = time_host(lambda: model.set_adapter(next(names)), 5, 30)
    table.add(f"{name}-lora-swap", dtype, 1, med, p90, 1)
    model.set_adapter("default")
    model.delete_adapter("other")


def bert_rows(table: Table, dev, quick: bool, wu: int, reps: int):
    dtype = torch.float16 if dev.type == "cuda" else torch.float32  # fp16 matmuls are slow/absent on CPU
    cfg = BertConfig(num_labels=3) if not quick else BertConfig(num_labels=3, hidden_size=64, num_hidden_layers=2,
                                                               num_attention_heads=4, intermediate_size=128)
    model = BertForSequenceClassification(cfg).to(dev, dtype).eval()
    table.meta["notes"]["bert-base"] = {"attn_implementation": getattr(model.config, "_attn_implementation", None)}
    S = 128
    with torch.no_grad():
        for B in ([1, 4] if quick else [1, 4, 16, 64]):
            ids = torch.randint(1000, cfg.vocab_size, (B, S), device=dev)
            mask = torch.ones_like(ids)
            med, p90 = time_events(lambda: model(input_ids=ids, attention_mask=mask), wu, reps)
            table.add("bert-base-cls-seq128", dtype, B, med, p90, B)
    del model
    free()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--quick", action="store_true", help="CPU smoke run with tiny shapes")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    dev = torch.device("cuda" if torch.cuda.is_available() and not args.quick else "cpu")
    wu, reps = (2, 5) if args.quick else (5, 30)
    meta = {
        "gpu": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu (quick smoke run)",
        "torch": torch.__version__, "cuda": torch.version.cuda, "transformers": transformers.__version__,
        "peft": peft.__version__, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host_cpus": os.cpu_count(),
        "method": (f"random-weight models from configs; CUDA events around each forward, synchronised before each rep; "
                   f"{wu} warm-up + {reps} timed reps, median and p90; adapter load/swap: host clock around "
                   f"torch.cuda.synchronize; LoRA r=16 alpha=32 on {','.join(LORA_TARGETS)}; prefill/decode compute "
                   f"logits for the last position only (logits_to_keep=1); decode KV cache {KV_LEN} tokens/sequence"),
    }
    # Name the table after the card it was measured on (accelerators-h100.json on an H100).
    card = next((c for c in ("h100", "h200", "a100", "l4") if c in meta["gpu"].lower()), "gpu")
    table = Table(args.out / ("accelerators-quick.json" if args.quick else f"accelerators-{card}.json"), meta)
    steps = [("rooflines", lambda: table.meta.update(roofline=rooflines(dev, args.quick))),
             ("bert", lambda: bert_rows(table, dev, args.quick, wu, reps))]
    steps += [(n, (lambda n=n: llama_rows(table, n, dev, torch.bfloat16, args.quick, wu, reps))) for n in LLAMA_SHAPES]
    for step, fn in steps:
        t0 = time.time()
        try:
            fn()
        except Exception as exc:
            traceback.print_exc()
            table.meta["errors"].append(f"{step}: {type(exc).__name__}: {exc}"[:500])
        table.save()
        print(f"== {step} done in {time.time() - t0:.1f}s", flush=True)
    print(json.dumps(table.meta.get("roofline")), "errors:", table.meta["errors"])


if __name__ == "__main__":
    main()
