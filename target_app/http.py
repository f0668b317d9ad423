"""HTTP glue shared by the app's FastAPI ingresses."""

from __future__ import annotations

from fastapi import FastAPI


class _ExactPrefixAsRoot:
    """Serve mounts an app at its route_prefix (root_path); Starlette would answer a request
    to exactly that prefix (`POST /rag`) with a 307 to `/rag/`, which clients do not follow
    for POST. This treats the bare prefix as the app's `/`."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope.get("root_path") and scope["path"] == scope["root_path"]:
            scope = {**scope, "path": scope["path"] + "/"}
        await self.app(scope, receive, send)


def ingress_api(title: str) -> FastAPI:
    """A FastAPI app for a Serve ingress mounted at a route_prefix."""
    api = FastAPI(title=title)
    api.add_middleware(_ExactPrefixAsRoot)
    return api
