"""Serve configurations: load and validate them, deploy them through Ray's dashboard REST
API (what `serve deploy` does), and wait for the applications to run."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tuner.errors import StackError, UsageError, first_problem, read_yaml
from tuner import settle
from tuner.names import app_name, deployment_key

APPLICATIONS_PATH = "/api/serve/applications/"


def load_serve_config(path: Path) -> dict:
    """Read and validate a Serve config file with Ray's own ServeDeploySchema."""
    from pydantic import ValidationError
    from ray.serve.schema import ServeDeploySchema

    raw = read_yaml(path, "serve config")
    if not isinstance(raw, dict):
        raise UsageError(f"serve config {path}: must be a mapping with 'applications'")
    _check_deployment_entries(raw, path)
    if problem := unknown_field(raw, ServeDeploySchema):
        raise UsageError(f"serve config {path}: {problem}")
    try:
        ServeDeploySchema.model_validate(raw)
    except ValidationError as e:
        raise UsageError(f"serve config {path}: {first_problem(e)}") from e
    _check_names(raw, path)
    _check_autoscaling(raw, path)
    _check_user_configs(raw, path)
    return raw


def _check_deployment_entries(raw: dict, path: Path) -> None:
    """Ray's own validators assume every deployment entry is a mapping (and fail with an
    AttributeError on anything else), so check that first."""
    apps = raw.get("applications")
    for i, app in enumerate(apps if isinstance(apps, list) else []):
        deps = app.get("deployments") if isinstance(app, dict) else None
        for j, dep in enumerate(deps if isinstance(deps, list) else []):
            if not isinstance(dep, dict):
                raise UsageError(f"serve config {path}: applications.{i}.deployments.{j}: must be a mapping with "
                                 f"a name (got {type(dep).__name__})")


def _nested_models(annotation) -> tuple[type | None, bool]:
    """The pydantic model a field's annotation holds, if any, and whether as a list of them
    (`Union[Dict, AutoscalingConfig]`, `List[ServeApplicationSchema]`, `Optional[...]`)."""
    import types
    import typing

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (list, typing.List):
        model, _ = _nested_models(args[0]) if args else (None, False)
        return model, model is not None
    for arg in args if origin in (typing.Union, types.UnionType) else ():
        model, many = _nested_models(arg)
        if model is not None:
            return model, many
    return None, False


def unknown_field(raw: dict, model, where: str = "") -> str | None:
    """The first key of `raw`, at any depth, that `model` (a pydantic model such as Ray's
    ServeDeploySchema) does not define: `path: unknown field; did you mean ...?`, or None.

    Ray's schemas ignore unknown keys, so `max_ongoing_request: 32` or `min_replica: 1` would
    run silently on the defaults; a tuner that measured a config the user did not mean to
    write is worse than one that refuses it. Free-form fields (`user_config`, `runtime_env`)
    are left to their own checks."""
    import difflib

    fields = {(f.alias or name): f for name, f in model.model_fields.items()}
    for key, value in raw.items():
        path = where + (str(key) if str(key).isprintable() else repr(key))  # one line, whatever the key
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            return f"{path}: unknown field" + (f"; did you mean {close[0]}?" if close else "")
        nested, many = _nested_models(fields[key].annotation)
        if nested is None:
            continue
        for i, item in (enumerate(value) if many and isinstance(value, list) else [(None, value)]):
            if isinstance(item, dict):
                inner = f"{path}.{i}." if i is not None else f"{path}."
                if problem := unknown_field(item, nested, inner):
                    return problem
    return None


def _check_names(raw: dict, path: Path) -> None:
    """ServeDeploySchema takes any deployment name, and Serve refuses an unknown one only when
    it deploys; for target_app's own applications, check the names against the app now."""
    for i, app in enumerate(raw["applications"]):
        module, _, attr = app["import_path"].replace(":", ".").rpartition(".")
        if module != "target_app.app":
            continue
        from target_app.topology import APPLICATIONS

        known = APPLICATIONS.get(attr.removesuffix("_app"), (None, None))[1]
        for j, dep in enumerate(app.get("deployments") or []):
            if known is not None and dep["name"] not in known:
                raise UsageError(f"serve config {path}: applications.{i}.deployments.{j}.name: {dep['name']!r} is not "
                                 f"a deployment of {app['import_path']} (it has {', '.join(sorted(known))})")


def _check_autoscaling(raw: dict, path: Path) -> None:
    """ServeDeploySchema keeps autoscaling_config a plain dict that Serve checks only when it
    deploys; check each with Serve's AutoscalingConfig now (bounds, delays, factors)."""
    from pydantic import ValidationError
    from ray.serve.config import AutoscalingConfig

    for app in raw.get("applications") or []:
        for dep in app.get("deployments") or []:
            auto = dep.get("autoscaling_config")
            if isinstance(auto, dict):
                try:
                    AutoscalingConfig.model_validate(auto)
                except ValidationError as e:
                    key = deployment_key(app_name(app), dep.get("name"))
                    where = f"{key if key.isprintable() else repr(key)}.autoscaling_config"  # names are the user's
                    problem = first_problem(e).rstrip("!")
                    raise UsageError(f"serve config {path}: {where}: {problem}") from e


def _check_user_configs(raw: dict, path: Path) -> None:
    """Serve hands `user_config` to a replica's `reconfigure` only once it runs, so a typo or a
    compute setting no accelerator table can serve would fail at deploy, replica by replica;
    check target_app's deployments with their own models now, naming the field."""
    from pydantic import ValidationError

    from target_app.user_config import check_deployment

    for app in raw["applications"]:
        if not app["import_path"].startswith("target_app.app"):
            continue
        for dep in app.get("deployments") or []:
            where = f"{deployment_key(app_name(app), dep['name'])}.user_config"
            try:
                check_deployment(dep["name"], dep)
            except ValidationError as e:
                raise UsageError(f"serve config {path}: {where}.{first_problem(e)}") from e
            except ValueError as e:
                raise UsageError(f"serve config {path}: {where}: {str(e).removeprefix('user_config.')}") from e


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
            lines = [x.strip() for x in details["applications"][failed[0]].get("message", "").splitlines() if x.strip()]
            # Serve's message ends with the replica's exception; the traceback above it goes to Ray's logs
            raise StackError(f"application {failed[0]!r} is {last[failed[0]]}: {(lines or ['no message'])[-1][:400]}")
        if all(last.get(n) == "RUNNING" for n in app_names):
            return details
        time.sleep(1)
    raise StackError(f"applications not RUNNING after {timeout_s:.0f}s: {last}")


def start_replicas(serve_config: dict) -> dict[str, int]:
    """Replicas each deployment starts a trial with: num_replicas, or the autoscaler's
    initial_replicas (else min_replicas), keyed `application/deployment`."""
    out = {}
    for app in serve_config.get("applications") or []:
        for dep in app.get("deployments") or []:
            auto = dep.get("autoscaling_config")
            n = dep.get("num_replicas")
            n = 1 if n is None else n
            if auto or n == "auto":
                auto = auto or {}
                n = auto.get("initial_replicas")
                n = auto.get("min_replicas", 1) if n is None else n
            out[deployment_key(app_name(app), dep["name"])] = int(n)
    return out


def pinned(serve_config: dict) -> dict:
    """The config with every autoscaled deployment held at its starting replica count.

    Deploying this and then the config itself gives each trial the same start: Serve resets
    an autoscaled deployment to initial_replicas, with fresh autoscaler state, whenever its
    config changes. The hold narrows the autoscaling bounds rather than removing
    autoscaling_config: Serve counts the set of autoscaling policies in an application's
    code version, so removing one would restart every replica of the application."""
    import copy

    out = copy.deepcopy(serve_config)
    start = start_replicas(serve_config)
    for app in out.get("applications") or []:
        for dep in app.get("deployments") or []:
            n = start[deployment_key(app_name(app), dep["name"])]
            if isinstance(dep.get("autoscaling_config"), dict):
                dep["autoscaling_config"] |= {"min_replicas": n, "initial_replicas": n, "max_replicas": max(n, 1)}
            elif dep.get("num_replicas") == "auto":
                dep["num_replicas"] = n
    return out


# Set, to a value new for each trial, on the deployments that keep state between requests: a
# change of ray_actor_options is one Serve answers with new replicas (of that deployment only;
# the rest of its application stays), so each trial starts them empty.
FRESH_ENV = "TUNER_FRESH_REPLICAS"


def with_fresh(serve_config: dict, names: frozenset[str], token: str) -> dict:
    """The config with the deployments named in `names` marked with `token` (FRESH_ENV in their
    runtime_env): deployed after a different token, they start on new replicas."""
    import copy

    out = copy.deepcopy(serve_config)
    for app in out.get("applications") or []:
        for dep in app.get("deployments") or []:
            if dep["name"] in names:
                env = dep.setdefault("ray_actor_options", {}).setdefault("runtime_env", {}).setdefault("env_vars", {})
                env[FRESH_ENV] = token
    return out


def running_replicas(details: dict) -> dict[str, dict]:
    """Per deployment: status, target and RUNNING replica ids, from Serve's status document."""
    out = {}
    for application, app in (details.get("applications") or {}).items():
        for name, dep in (app.get("deployments") or {}).items():
            out[deployment_key(application, name)] = {
                "status": dep.get("status"), "target": dep.get("target_num_replicas"),
                "running": sorted(r["replica_id"] for r in dep.get("replicas") or [] if r.get("state") == "RUNNING")}
    return out


def wait_settled(dashboard_url: str, expected: dict[str, int], timeout_s: float, stable_s: float = settle.STABLE_S,
                 headers: dict | None = None) -> dict[str, dict]:
    """Wait until every deployment is HEALTHY with exactly its expected RUNNING replicas, and
    has stayed so for `stable_s`; returns the replica view."""
    deadline = time.monotonic() + timeout_s
    since, view = None, {}
    while time.monotonic() < deadline:
        try:
            view = running_replicas(serve_details(dashboard_url, headers))
        except httpx.HTTPError:
            view = {}
        ok = all(key in view and view[key]["status"] == "HEALTHY" and len(view[key]["running"]) == n
                 for key, n in expected.items())
        if ok:
            since = since or time.monotonic()
            if time.monotonic() - since >= stable_s:
                return view
        else:
            since = None
        time.sleep(settle.POLL_S)
    off = {k: (len(view.get(k, {}).get("running", [])), n) for k, n in expected.items()
           if len(view.get(k, {}).get("running", [])) != n or view.get(k, {}).get("status") != "HEALTHY"}
    raise StackError(f"replicas did not settle in {timeout_s:.0f}s (running, expected): {off}")
