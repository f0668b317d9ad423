"""The Serve applications of the system under test, as `serve deploy` imports them.

Deployment names are a contract with the tuner, the tests and the exported manifests.
Every tunable lives in `serve_config.yaml`, which overrides the decorator defaults here.
"""

from __future__ import annotations

from target_app.generate import LLMGenerator
from target_app.lora import LoRACompletions, MultiLoRAModel
from target_app.rag import RAGService
from target_app.rerank import Reranker
from target_app.rewriter import QueryRewriter
from target_app.router import DomainClassifier, DomainRouter
from target_app.search import VectorSearch

CLASSIFIER_NAMES = {"legal": "LegalClassifier", "medical": "MedicalClassifier", "finance": "FinanceClassifier"}

# application name -> (route_prefix, deployment names), the shape serve_config.yaml must have.
APPLICATIONS = {
    "rag": ("/rag", ["QueryRewriter", "VectorSearch", "Reranker", "LLMGenerator", "RAGService"]),
    "router": ("/predict", ["DomainRouter", *CLASSIFIER_NAMES.values()]),
    "lora": ("/v1", ["LoRACompletions", "MultiLoRAModel"]),
}

rag_app = RAGService.bind(QueryRewriter.bind(), VectorSearch.bind(), Reranker.bind(), LLMGenerator.bind())

router_app = DomainRouter.bind(
    *(DomainClassifier.options(name=CLASSIFIER_NAMES[d]).bind(d) for d in ("legal", "medical", "finance"))
)

lora_app = LoRACompletions.bind(MultiLoRAModel.bind())
