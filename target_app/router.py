"""The domain router: POST /predict {"domain", "text"} to one of three batched classifiers."""


import json

from fastapi import HTTPException
from pydantic import BaseModel, Field
from ray import serve
from ray.serve.handle import DeploymentHandle

from target_app.batching import (
    BatchSettings,
    apply_batch_settings,
    live_batch_settings,
    off_loop,
    set_torch_threads,
)
from target_app.emulated import EmulatedDevice, standin_label
from target_app.http import ingress_api
from target_app.models.build import DOMAIN_LABELS
from target_app.user_config import ClassifierConfig, compute_tables

DOMAINS = ("legal", "medical", "finance")

api = ingress_api("Domain router")


class PredictRequest(BaseModel):
    """Body of POST /predict; the domain is checked by hand to answer 400, not 422."""

    domain: str
    text: str = Field(min_length=1, max_length=10_000)


def classifier_labels(path: str) -> list[str]:
    """The labels of the classifier in a folder (its config.json)."""
    return json.loads(open(f"{path}/config.json").read())["labels"]


def load_classifier(path: str):
    """A HashedBagClassifier and its labels from a folder (model.pt + config.json)."""
    import torch

    from target_app.models.classifier import HashedBagClassifier

    meta = json.loads(open(f"{path}/config.json").read())
    model = HashedBagClassifier(len(meta["labels"]), meta["dim"])
    model.load_state_dict(torch.load(f"{path}/model.pt", weights_only=True))
    return model.eval(), meta["labels"]


@serve.deployment(max_ongoing_requests=32)
class DomainClassifier:
    """One domain's classifier; deployed three times as Legal/Medical/FinanceClassifier."""

    def __init__(self, domain: str):
        self.domain = domain
        self._model_key: object = object()
        self.reconfigure({})

    def reconfigure(self, user_config: dict) -> None:
        """Apply a new `user_config` in place; reloads the model only if its path changed."""
        from target_app.models.build import classifier_path

        cfg = ClassifierConfig.model_validate(user_config or {})
        if cfg.compute.mode == "local":  # an emulated replica never imports torch
            set_torch_threads(cfg.torch_threads)
        path = cfg.model_path or str(classifier_path(self.domain))
        key = (path, cfg.compute.mode)
        if self._model_key != key:
            # The labels are part of the answer in either mode; only `local` needs the model.
            if cfg.compute.mode == "local":
                self._model, self.labels = load_classifier(path)
            else:
                self._model, self.labels = None, classifier_labels(path)
            self._model_key = key
        self._table = compute_tables(cfg.compute).get("")
        if self._table is not None:
            self._device = EmulatedDevice(cfg.compute.cards)
        apply_batch_settings(self.classify, cfg.batch)
        self.config = cfg

    async def __call__(self, text: str) -> dict:
        """{'label', 'score', 'compute'} for one text."""
        return {**await self.classify(text), "compute": self.config.compute.label}

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def classify(self, texts: list[str]) -> list[dict]:
        if self._table is not None:
            await self._device.run(self._table.milliseconds(len(texts)))
            return [{"label": standin_label(t, DOMAIN_LABELS[self.domain]), "score": None} for t in texts]
        return await off_loop(self._predict, texts)

    def _predict(self, texts: list[str]) -> list[dict]:
        import torch

        from target_app.models.classifier import encode_batch

        with torch.no_grad():
            probs = torch.softmax(self._model(*encode_batch(texts)), dim=-1)
        best = probs.max(dim=-1)
        return [{"label": self.labels[i], "score": round(float(p), 4)} for p, i in zip(best.values, best.indices)]

    def batch_settings(self) -> dict:
        """The batch settings live in Serve's batch queue."""
        return live_batch_settings(self.classify)


@serve.deployment(name="DomainRouter", max_ongoing_requests=64)
@serve.ingress(api)
class DomainRouter:
    def __init__(self, legal: DeploymentHandle, medical: DeploymentHandle, finance: DeploymentHandle):
        self.classifiers = {"legal": legal, "medical": medical, "finance": finance}

    @api.post("/")
    async def predict(self, req: PredictRequest) -> dict:
        """Classify `text` with the model of its `domain`."""
        handle = self.classifiers.get(req.domain)
        if handle is None:
            raise HTTPException(400, f"unknown domain {req.domain!r}: expected one of {', '.join(DOMAINS)}")
        return {"domain": req.domain, **(await handle.remote(req.text))}
