"""How deployments and applications are named across configs, results and queries (pure)."""

from __future__ import annotations


def deployment_key(application: str, deployment: str) -> str:
    """A deployment's name in results and timelines: `application/deployment`."""
    return f"{application}/{deployment}"


def app_name(app: dict) -> str:
    """An application's name in a Serve config (Serve's default when it has none)."""
    return app.get("name") or "default"
