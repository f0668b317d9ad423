"""Serve configurations: load and validate them, deploy them through Ray's dashboard REST
API (what `serve deploy` does), and wait for the applications to run."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import yaml

from tuner.errors import StackError, UsageError

APPLICATIONS_PATH = "/api/serve/applications/"


def load_serve_config(path: Path) -> dict:
    """Read and validate a Serve config file with Ray's own ServeDeploySchema."""
    from pydantic import ValidationError
    from ray.serve.schema import ServeDeploySchema

    if not path.is_file():
        raise UsageError(f"serve config {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UsageError(f"serve config {path} is not valid YAML{where}") from e
    if not isinstance(raw, dict):
        raise UsageError(f"serve config {path} must be a mapping with 'applications'")
    try:
        ServeDeploySchema.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise UsageError(f"serve config {path}: {loc}: {err['msg']}") from e
    return raw


def http_endpoint(serve_config: dict) -> tuple[str, int]:
    """The proxy's (host, port) that this config asks for (Serve's defaults if absent)."""
    opts = serve_config.get("http_options") or {}
    return opts.get("host", "127.0.0.1"), int(opts.get("port", 8000))


def deploy(dashboard_url: str, serve_config: dict, headers: dict | None = None, timeout_s: float = 30) -> None:
    """Submit the config; Serve updates in place where only tunable fields changed."""
    try:
        r = httpx.put(dashboard_url + APPLICATIONS_PATH, json=serve_config, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as e:
        raise StackError(f"cannot reach the Ray dashboard at {dashboard_url}: {e}") from e
    if r.status_code != 200:
        raise StackError(f"deploy refused by Serve ({r.status_code}): {r.text.strip().splitlines()[-1][:300]}")


def serve_details(dashboard_url: str, headers: dict | None = None, timeout_s: float = 10) -> dict:
    """Serve's status document: applications, deployments, replicas."""
    r = httpx.get(dashboard_url + APPLICATIONS_PATH, headers=headers, timeout=timeout_s)
    r.raise_for_status()
    return r.json()


def app_statuses(details: dict) -> dict[str, str]:
    """Application name -> status (RUNNING, DEPLOYING, DEPLOY_FAILED, ...)."""
    return {name: app.get("status", "UNKNOWN") for name, app in (details.get("applications") or {}).items()}


def wait_running(dashboard_url: str, app_names: list[str], timeout_s: float, headers: dict | None = None) -> dict:
    """Wait until every named application is RUNNING; raise with Serve's message on failure."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, str] = {}
    while time.monotonic() < deadline:
        try:
            details = serve_details(dashboard_url, headers)
        except httpx.HTTPError:
            time.sleep(1)
            continue
        last = app_statuses(details)
        failed = [n for n in app_names if last.get(n) in ("DEPLOY_FAILED", "UNHEALTHY")]
        if failed:
            msg = details["applications"][failed[0]].get("message", "")
            raise StackError(f"application {failed[0]!r} is {last[failed[0]]}: {msg.strip()[-500:]}")
        if all(last.get(n) == "RUNNING" for n in app_names):
            return details
        time.sleep(1)
    raise StackError(f"applications not RUNNING after {timeout_s:.0f}s: {last}")
