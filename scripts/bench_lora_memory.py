"""Memory of the MultiLoRAModel replica while adapters cycle through its cache, without Ray.

Drives the real `target_app.lora.MultiLoRAModel` (local compute mode) in one asyncio loop, as a
replica does: `__call__` per request, `get_model` behind Serve's own `_ModelMultiplexWrapper`
`load_model` / `unload_model_lru` code (LRU of `--cache`, `__del__` run on eviction), loads and
generations in the loop's default executor threads, `--concurrency` requests in flight. Only the
replica context, the request's multiplexed model id and Serve's metrics are stubbed. The adapter
sequence is Zipf-ish (`--sequence zipf`) or round-robin over lora-00..lora-31. Prints the process
RSS, glibc's malloc counters (mallinfo2) and the live PeftModel / GPT-2 module count every
`--every` requests, then the RSS growth per 100 adapter loads (overall, and the least-squares slope
after the first checkpoint), and checks that every (adapter, prompt) pair gave the same text cold
and warm (plus a digest of the texts, to compare two lora.py versions).

    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python scripts/bench_lora_memory.py [--requests 400]
        [--sequence zipf|roundrobin] [--concurrency 4] [--malloc-trim] [--lora-file OTHER_lora.py]

Hypothesis switches: MALLOC_ARENA_MAX=1|2 in the environment (glibc arenas per executor thread),
MALLOC_MMAP_THRESHOLD_=1048576 (big blocks always mmap'd, so freed ones go straight back),
`--malloc-trim` (ctypes malloc_trim(0) after each request: give freed heap pages back),
`--lora-file` (an alternative lora.py, e.g. the pre-fix one, for an A/B run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import ctypes
import gc
import hashlib
import importlib.util
import os
import random
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import psutil

# Run as a file (`python scripts/...`): this checkout's packages first, whatever is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPTS = ["the contract was signed by", "my heart rate is", "the portfolio returns were"]
MB = 1024 * 1024


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


_libc = ctypes.CDLL("libc.so.6")
_libc.mallinfo2.restype = _MallInfo2


def malloc_stats() -> str:
    m = _libc.mallinfo2()
    return (f"heap {m.arena / MB:7.1f} MB (in use {m.uordblks / MB:6.1f}, free {m.fordblks / MB:6.1f})  "
            f"mmapped {m.hblkhd / MB:6.1f} MB")


def live_modules() -> str:
    gc.collect()
    from peft import PeftModel
    from transformers import GPT2LMHeadModel

    objs = gc.get_objects()
    peft = sum(isinstance(o, PeftModel) for o in objs)
    gpt2 = sum(isinstance(o, GPT2LMHeadModel) for o in objs)
    return f"live PeftModel {peft} GPT2LMHeadModel {gpt2}"


def load_lora_module(path: str | None):
    if path is None:
        import target_app.lora as mod
        return mod
    spec = importlib.util.spec_from_file_location("bench_lora_under_test", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _Metric:
    def inc(self, *a, **k): ...
    def observe(self, *a, **k): ...
    def set(self, *a, **k): ...


def install_serve_stubs(lora_mod, replica):
    """Serve's multiplex cache (its real load/unload code) on `replica`, and the request context."""
    from ray import serve
    from ray.serve.multiplex import _ModelMultiplexWrapper

    model_id: contextvars.ContextVar[str] = contextvars.ContextVar("model_id")
    serve.get_multiplexed_model_id = model_id.get  # lora.py reads these through the `serve` module
    serve.get_replica_context = lambda: SimpleNamespace(replica_id=SimpleNamespace(unique_id="bench"))

    class Wrapper:  # _ModelMultiplexWrapper less its replica context, metrics pusher and controller push
        load_model = _ModelMultiplexWrapper.load_model
        unload_model_lru = _ModelMultiplexWrapper.unload_model_lru

    w = Wrapper()
    w.models = __import__("collections").OrderedDict()
    w._func = type(replica).get_model.__wrapped__
    w.self_arg = replica
    w.max_num_models_per_replica = replica.config.max_models_per_replica
    w._model_cache_lock = asyncio.Lock()
    w._model_load_tasks = set()
    w._push_multiplexed_replica_info = False
    for name in ("model_load_latency_ms", "model_unload_latency_ms", "num_models_gauge", "registered_model_gauge",
                 "get_model_requests_counter", "models_unload_counter", "models_load_counter"):
        setattr(w, name, _Metric())
    setattr(replica, lora_mod._SERVE_MULTIPLEX_ATTR, w)
    return model_id


def adapter_sequence(kind: str, n: int, count: int, seed: int) -> list[str]:
    if kind == "roundrobin":
        return [f"lora-{i % count:02d}" for i in range(n)]
    rng = random.Random(seed)
    weights = [1 / (k + 1) ** 1.1 for k in range(count)]
    order = list(range(count))
    rng.shuffle(order)
    return [f"lora-{order[k]:02d}" for k in rng.choices(range(count), weights, k=n)]


async def run(args) -> int:
    lora_mod = load_lora_module(args.lora_file)
    replica = lora_mod.MultiLoRAModel.func_or_class()
    replica.reconfigure({"max_models_per_replica": args.cache, "max_new_tokens": args.max_tokens})
    model_id = install_serve_stubs(lora_mod, replica)
    seq = adapter_sequence(args.sequence, args.requests, args.adapters, args.seed)
    proc = psutil.Process()
    texts: dict[tuple[str, str], str] = {}
    state = {"loads": 0, "hits": 0, "done": 0, "mismatch": 0}
    points: list[tuple[int, float]] = []
    unknown = await _one(replica, model_id, "lora-nope", PROMPTS[0], args.max_tokens)
    assert "error" in unknown, unknown

    def report(tag: str) -> None:
        rss = proc.memory_info().rss / MB
        points.append((state["loads"], rss))
        print(f"{tag:>5} req {state['done']:4d} loads {state['loads']:4d} rss {rss:7.1f} MB  {malloc_stats()}  "
              f"{live_modules()}  threads {proc.num_threads()}", flush=True)

    report("start")
    queue = asyncio.Queue()
    for i, a in enumerate(seq):
        queue.put_nowait((i, a))

    async def worker():
        while not queue.empty():
            i, adapter = queue.get_nowait()
            prompt = PROMPTS[i % len(PROMPTS)]
            out = await _one(replica, model_id, adapter, prompt, args.max_tokens)
            state["loads" if out["adapter_cache"] == "miss" else "hits"] += 1
            prev = texts.setdefault((adapter, prompt), out["text"])
            state["mismatch"] += prev != out["text"]
            if args.malloc_trim:
                _libc.malloc_trim(0)
            state["done"] += 1
            if state["done"] % args.every == 0:
                report("")

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    elapsed = time.perf_counter() - t0
    fit = points[1:] if len(points) > 2 else points
    xs, ys = [p[0] for p in fit], [p[1] for p in fit]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / max(1e-9, sum((x - mx) ** 2 for x in xs))
    print(f"\n{state['done']} requests in {elapsed:.1f}s: {state['loads']} loads, {state['hits']} hits; "
          f"cache now {replica.loaded_adapters()}")
    total = (points[-1][1] - points[0][1]) / max(1, points[-1][0]) * 100
    print(f"RSS {points[0][1]:.1f} -> {points[-1][1]:.1f} MB: {total:+.1f} MB per 100 loads overall, "
          f"{slope * 100:+.1f} MB per 100 loads after the first checkpoint (fit over loads {xs[0]}..{xs[-1]})")
    digest = hashlib.sha1(repr(sorted(texts.items())).encode()).hexdigest()[:12]
    print(f"cold/warm text mismatches: {state['mismatch']} over {len(texts)} (adapter, prompt) pairs; "
          f"texts digest {digest} (compare across --lora-file runs)")
    return 1 if state["mismatch"] else 0


async def _one(replica, model_id, adapter, prompt, max_tokens) -> dict:
    token = model_id.set(adapter)
    try:
        return await replica(prompt, max_tokens)
    finally:
        model_id.reset(token)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--adapters", type=int, default=32)
    p.add_argument("--cache", type=int, default=4)
    p.add_argument("--sequence", choices=["zipf", "roundrobin"], default="zipf")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=8)
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--malloc-trim", action="store_true")
    p.add_argument("--lora-file", help="an alternative lora.py to measure (default: target_app/lora.py)")
    args = p.parse_args()
    print(f"MALLOC_ARENA_MAX={os.environ.get('MALLOC_ARENA_MAX', '-')} OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', '-')} lora={args.lora_file or 'target_app/lora.py'}", flush=True)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
