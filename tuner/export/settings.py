"""The deployment-site settings of `tuner export` (names, images, endpoints, pod shapes): not
tuned, so they come from options, validated here with errors that name the option."""

from __future__ import annotations

import re
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tuner import project_version

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$")
GIB = 2**30


def _address(v: str, schemes: tuple[str, ...] | None, example: str) -> str:
    """`v` if it is a network address: a URL with one of `schemes` and a host, or with no
    schemes `host:port` (ValueError saying what is expected)."""
    problem = f"{v!r} is not {'a URL (' + ' or '.join(schemes) + ')' if schemes else 'host:port'} such as {example}"
    try:
        url = urlparse(v if schemes else f"//{v}")
        port = url.port  # raises for a port out of range, or one that is not a number
    except ValueError:
        raise ValueError(problem) from None
    shape_ok = url.scheme in schemes if schemes else port is not None and not (url.path or url.query or url.fragment)
    if not shape_ok or not url.hostname or any(c.isspace() for c in v):
        raise ValueError(problem)
    return v


class PodShape(BaseModel):
    """What one pod of a group asks Kubernetes for, and so offers Ray."""

    model_config = ConfigDict(frozen=True)

    cpus: float = Field(gt=0, le=1024)
    memory_gib: float = Field(gt=0, le=4096)
    gpus: int = Field(0, ge=0, le=16)


class ExportSettings(BaseModel):
    """Where and how the manifests deploy. Endpoints left unset point at in-cluster Services of
    the namespace: the exported vLLM, a Milvus and a Redis the user runs."""

    model_config = ConfigDict(frozen=True)

    name: str = Field("target-app", max_length=40, description="RayService name (KubeRay appends suffixes)")
    namespace: str = Field("ray-serve", max_length=63)
    image: str = Field(default_factory=lambda: f"rayserve-tuner/target-app:{project_version()}")
    kubernetes_version: str = Field("1.35", pattern=r"^1\.[0-9]{2}$")
    llm_url: str | None = None
    llm_deployment: str = Field("vllm", max_length=63)
    llm_image: str = "vllm/vllm-openai:v0.11.0"
    llm_model: str = "meta-llama/Llama-3.1-8B-Instruct"
    milvus_uri: str | None = None
    redis_address: str | None = None
    redis_secret: str = Field("redis-password", max_length=253)
    head: PodShape = PodShape(cpus=2, memory_gib=8)
    # GPU deployments go to a group of these when the cluster layer has no GPU group.
    gpu_pod: PodShape = PodShape(cpus=8, memory_gib=32, gpus=1)

    @field_validator("name", "namespace", "llm_deployment", "redis_secret")
    @classmethod
    def _dns_label(cls, v: str) -> str:
        if not _DNS_LABEL.match(v):
            raise ValueError(f"{v!r} is not a DNS-1123 label (lower-case letters, digits and '-')")
        return v

    @field_validator("image", "llm_image")
    @classmethod
    def _image(cls, v: str) -> str:
        if not _IMAGE.match(v):
            raise ValueError(f"{v!r} is not an image reference")
        return v

    @field_validator("llm_url")
    @classmethod
    def _llm_url(cls, v: str | None) -> str | None:
        return None if v is None else _address(v, ("http", "https"), "http://llm:8000/v1")

    @field_validator("milvus_uri")
    @classmethod
    def _milvus_uri(cls, v: str | None) -> str | None:
        # not a Milvus Lite file: that would be one database per pod
        return None if v is None else _address(v, ("http", "https", "tcp", "grpc"), "http://milvus:19530")

    @field_validator("redis_address")
    @classmethod
    def _redis_address(cls, v: str | None) -> str | None:
        return None if v is None else _address(v, None, "redis:6379")

    def service(self, name: str, port: int) -> str:
        """An in-cluster Service's address in this namespace."""
        return f"{name}.{self.namespace}.svc.cluster.local:{port}"

    @property
    def llm_endpoint(self) -> str:
        return self.llm_url or f"http://{self.service(self.llm_deployment, 8000)}/v1"

    @property
    def milvus_endpoint(self) -> str:
        return self.milvus_uri or f"http://{self.service('milvus', 19530)}"

    @property
    def redis(self) -> str:
        return self.redis_address or self.service("redis", 6379)

    @property
    def exports_llm(self) -> bool:
        """The vLLM Deployment (and its HPA) are exported unless an existing endpoint is given."""
        return self.llm_url is None
