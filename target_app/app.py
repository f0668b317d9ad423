"""The Serve applications of the system under test, as `serve deploy` imports them.

The names, routes and call graph are target_app/topology.py's; the graphs bound here follow it.
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
from target_app.topology import CLASSIFIERS

rag_app = RAGService.bind(QueryRewriter.bind(), VectorSearch.bind(), Reranker.bind(), LLMGenerator.bind())

router_app = DomainRouter.bind(
    *(DomainClassifier.options(name=CLASSIFIERS[d]).bind(d) for d in ("legal", "medical", "finance"))
)

lora_app = LoRACompletions.bind(MultiLoRAModel.bind())
