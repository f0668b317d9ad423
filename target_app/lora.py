"""The multi-LoRA model: one base transformer, many peft adapters, multiplexed by Serve.

POST /v1/completions picks the adapter OpenAI-style (`model` = adapter id) or by the
`serve_multiplexed_model_id` header; the ingress forwards it as the multiplexed model id,
so Serve routes requests for one adapter to the replicas that already hold it. A replica
keeps an LRU cache of loaded adapters and loads one from disk on a miss.
"""


import copy
import time
from pathlib import Path

from fastapi import HTTPException, Request
from pydantic import BaseModel, Field
from ray import serve
from ray.serve.handle import DeploymentHandle

from target_app.batching import off_loop, set_torch_threads
from target_app.emulated import DecodeEngine, EmulatedDevice, standin_completion
from target_app.http import ingress_api
from target_app.user_config import LORA_TABLES, LoRAConfig, compute_tables

MULTIPLEX_HEADER = "serve_multiplexed_model_id"
# Serve keeps a replica's adapter cache in this attribute (ray/serve/api.py, multiplexed()).
_SERVE_MULTIPLEX_ATTR = "__serve_multiplex_wrapper"

api = ingress_api("Multi-LoRA completions")


class CompletionRequest(BaseModel):
    """Body of POST /v1/completions (the OpenAI fields this route uses)."""

    model: str | None = None
    prompt: str = Field(min_length=1, max_length=10_000)
    max_tokens: int = Field(16, ge=1, le=256)
    stream: bool = False


def _generate(model, tokenizer, prompt: str, max_new_tokens: int) -> tuple[str, int]:
    import torch

    enc = tokenizer(prompt, return_tensors="pt", truncation=True, max_length=128)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=tokenizer.pad_token_id)
    new = out[0, enc["input_ids"].shape[1]:]
    return tokenizer.decode(new, skip_special_tokens=True), int(new.shape[0])


@serve.deployment(name="MultiLoRAModel", max_ongoing_requests=16)
class MultiLoRAModel:
    def __init__(self):
        self._base_key: object = object()
        self._engine_key: object = object()
        self._engine: DecodeEngine | None = None
        self.reconfigure({})

    def reconfigure(self, user_config: dict) -> None:
        """Apply a new `user_config` in place; the cache size applies from the next request."""
        from target_app.models.build import adapters_path, lora_base_path

        cfg = LoRAConfig.model_validate(user_config or {})
        if cfg.compute.mode == "local":  # an emulated replica never imports torch
            set_torch_threads(cfg.torch_threads)
            self._engine, self._engine_key = None, object()
            base = cfg.base_path or str(lora_base_path())
            if self._base_key != base:
                from transformers import AutoTokenizer, GPT2LMHeadModel

                self._base = GPT2LMHeadModel.from_pretrained(base).eval()
                self._tokenizer = AutoTokenizer.from_pretrained(base)
                self._base_key = base
        elif cfg.compute != self._engine_key:  # a new device only when the compute block changed
            tables = compute_tables(cfg.compute, LORA_TABLES)
            device = EmulatedDevice(cfg.compute.cards)
            self._engine = DecodeEngine(device, tables["-prefill"], tables["-decode"])
            self._load_ms = tables["-load"].milliseconds(1)
            self._engine_key = cfg.compute
        self._adapters = Path(cfg.adapters_path or adapters_path())
        self.config = cfg

    def adapter_ids(self) -> list[str]:
        """Ids of the adapters on disk."""
        return sorted(p.name for p in self._adapters.iterdir() if (p / "adapter_config.json").exists())

    def loaded_adapters(self) -> list[str]:
        """Adapters in this replica's cache, least recently used first."""
        wrapper = getattr(self, _SERVE_MULTIPLEX_ATTR, None)
        return list(wrapper.models) if wrapper else []

    @serve.multiplexed(max_num_models_per_replica=4)
    async def get_model(self, adapter_id: str):
        if self._engine is not None:
            # An emulated load: the adapter's weights copied onto the device, which it holds.
            await self._engine.device.run(self._load_ms)
            return adapter_id
        return await off_loop(self._load_adapter, adapter_id)

    def _load_adapter(self, adapter_id: str):
        from peft import PeftModel

        # peft injects LoRA layers into the model it wraps, so each adapter gets its own copy of the
        # base's modules, but they share its frozen weights (read only here: no merge, no training).
        # A full copy made ~18 MB of tensors per load in an executor thread; once freed, glibc kept
        # them in per-thread arenas, and the replica's RSS grew with every adapter it cycled through.
        shared = {id(t): t for t in (*self._base.parameters(), *self._base.buffers())}
        return PeftModel.from_pretrained(copy.deepcopy(self._base, shared), str(self._adapters / adapter_id)).eval()

    async def _sync_cache_size(self) -> None:
        wrapper = getattr(self, _SERVE_MULTIPLEX_ATTR, None)
        if wrapper is None:
            return
        wrapper.max_num_models_per_replica = self.config.max_models_per_replica
        while len(wrapper.models) > self.config.max_models_per_replica:
            await wrapper.unload_model_lru()

    async def __call__(self, prompt: str, max_tokens: int) -> dict:
        """Complete `prompt` with the request's adapter (its multiplexed model id)."""
        adapter_id = serve.get_multiplexed_model_id()
        if not (self._adapters / adapter_id / "adapter_config.json").exists():
            return {"error": f"unknown adapter {adapter_id!r}"}
        await self._sync_cache_size()
        hit = adapter_id in self.loaded_adapters()
        t0 = time.perf_counter()
        model = await self.get_model(adapter_id)
        load_ms = (time.perf_counter() - t0) * 1000
        await self._sync_cache_size()
        n = min(max_tokens, self.config.max_new_tokens)
        if self._engine is not None:
            await self._engine.generate(max(1, len(prompt.split())), n)
            text, produced = standin_completion(prompt, adapter_id, n), n
        else:
            text, produced = await off_loop(_generate, model, self._tokenizer, prompt, n)
        return {
            "text": text,
            "completion_tokens": produced,
            "prompt_tokens": len(prompt.split()),
            "adapter_cache": "hit" if hit else "miss",
            "adapter_load_ms": round(load_ms, 2),
            "replica": serve.get_replica_context().replica_id.unique_id,
            "compute": self.config.compute.label,
        }


@serve.deployment(name="LoRACompletions", max_ongoing_requests=64)
@serve.ingress(api)
class LoRACompletions:
    """OpenAI-style ingress, mounted at route_prefix /v1."""

    def __init__(self, model: DeploymentHandle):
        self.model = model

    @api.post("/completions")
    async def completions(self, req: CompletionRequest, request: Request) -> dict:
        """A completion from the adapter named by `model` or the multiplex header."""
        adapter = req.model or request.headers.get(MULTIPLEX_HEADER)
        if not adapter:
            raise HTTPException(400, f"name the adapter in 'model' or the {MULTIPLEX_HEADER} header")
        if req.stream:
            raise HTTPException(400, "streaming is not supported by the LoRA completions route")
        out = await self.model.options(multiplexed_model_id=adapter).remote(req.prompt, req.max_tokens)
        if "error" in out:
            raise HTTPException(404, out["error"])
        return {
            "id": f"cmpl-{int(time.time() * 1e6)}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": adapter,
            "choices": [{"index": 0, "text": out["text"], "finish_reason": "length", "logprobs": None}],
            "usage": {
                "prompt_tokens": out["prompt_tokens"],
                "completion_tokens": out["completion_tokens"],
                "total_tokens": out["prompt_tokens"] + out["completion_tokens"],
            },
            "serve": {k: out[k] for k in ("adapter_cache", "adapter_load_ms", "replica", "compute")},
        }

    @api.get("/models")
    async def models(self) -> dict:
        """The adapters this route serves, in OpenAI's list format."""
        ids = await self.model.adapter_ids.remote()
        return {"object": "list", "data": [{"id": i, "object": "model", "owned_by": "target_app"} for i in ids]}
