"""The manifest templates in k8s/templates/ and the YAML they are written as.

Templates are YAML with `${...}` placeholders for names, images and sizes (values validated
in ExportSettings, so substitution cannot break the YAML); the tuned parts are set on the
loaded documents, never spliced in as text. Output is deterministic: the same input gives
byte-identical files."""

from __future__ import annotations

from string import Template

import yaml

from tuner.paths import K8S_TEMPLATES


def render(template: str, **values) -> list[dict]:
    """The documents of `template` with its placeholders filled."""
    text = Template((K8S_TEMPLATES / template).read_text()).substitute({k: str(v) for k, v in values.items()})
    return [d for d in yaml.safe_load_all(text) if d is not None]


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, s: str):
    # Multi-line strings (serveConfigV2, a dashboard) as literal blocks, readable in review.
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None)


_Dumper.add_representer(str, _str)


def dump_all(docs: list[dict], header: str) -> str:
    """`docs` as one YAML stream, keys in the order built, after a comment header."""
    body = yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, width=120, default_flow_style=False)
    return "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines()) + body


def quantity_gib(gib: float) -> str:
    """A memory size in GiB as a Kubernetes quantity (`16Gi`, `1536Mi`)."""
    mib = round(gib * 1024)
    return f"{mib // 1024}Gi" if mib % 1024 == 0 else f"{mib}Mi"


def quantity_cpu(cpus: float) -> str:
    """CPUs as a Kubernetes quantity (`4`, `500m`)."""
    milli = round(cpus * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"
