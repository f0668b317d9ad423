"""The target app's topology as plain data: its applications, their routes, their deployments and
who calls whom.

Deployment names are a contract with the shipped Serve config, the tuner (which reaches the app
only through that config, so its simulator and profiler read the call graph here) and exported
manifests. It imports only the standard library, so that the tuner reads it without Ray, Serve
or torch; tests/test_topology.py checks it against the Serve graph target_app/app.py builds and
against serve_config.yaml.
"""

from __future__ import annotations

from typing import NamedTuple

# The stages RAGService calls, in turn, and each one's key in the `stages_ms` of its answers.
RAG_STAGES = {"QueryRewriter": "rewrite", "VectorSearch": "search", "Reranker": "rerank", "LLMGenerator": "generate"}
# DomainRouter's classifier of each domain: one class, deployed once per domain under these names.
CLASSIFIERS = {"legal": "LegalClassifier", "medical": "MedicalClassifier", "finance": "FinanceClassifier"}

# caller -> the deployments it calls in turn, holding its replica slot while it waits.
CHAIN = {"RAGService": tuple(RAG_STAGES), "LoRACompletions": ("MultiLoRAModel",)}
# caller -> {domain: deployment}: it calls the one deployment of the request's domain.
BY_DOMAIN = {"DomainRouter": CLASSIFIERS}

# Deployments whose model method is @serve.batch (batch settings from `user_config.batch`).
BATCHED = frozenset({"QueryRewriter", "Reranker", *CLASSIFIERS.values()})
# Batched stages whose model sees several items per request, and the (deployment, user_config
# field) that sets how many: the reranker scores every candidate the RAG service retrieved.
ITEMS_PER_REQUEST = {"Reranker": ("RAGService", "search_top_k")}
# Deployments that serve a @serve.multiplexed model (the request's adapter is its model id).
MULTIPLEXED = frozenset({"MultiLoRAModel"})
# The deployment that calls the LLM endpoint (outside Serve).
LLM_CALLER = "LLMGenerator"


def callees(name: str) -> tuple[str, ...]:
    """The deployments `name` may call: its chain, or every domain's deployment."""
    return CHAIN.get(name) or tuple(BY_DOMAIN.get(name, {}).values())


class Application(NamedTuple):
    """One Serve application: where it is mounted, its deployments (the ingress first, then
    what the ingress calls) and the HTTP path clients send requests to."""

    route_prefix: str
    deployments: tuple[str, ...]
    path: str

    @property
    def ingress(self) -> str:
        return self.deployments[0]


def _application(route_prefix: str, ingress: str, path: str) -> Application:
    return Application(route_prefix, (ingress, *callees(ingress)), path)


# application name -> its Application; target_app.app builds `<name>_app` for each.
APPLICATIONS = {
    "rag": _application("/rag", "RAGService", "/rag"),
    "router": _application("/predict", "DomainRouter", "/predict"),
    "lora": _application("/v1", "LoRACompletions", "/v1/completions"),
}
# HTTP path -> the ingress deployment that serves it.
ROUTES = {a.path: a.ingress for a in APPLICATIONS.values()}
DEPLOYMENTS = tuple(d for a in APPLICATIONS.values() for d in a.deployments)
