"""Listening socket for the emulator, with a port that can be closed for the
``refuse`` fault."""

from __future__ import annotations

import asyncio
import logging
import socket

import uvicorn
from fastapi import FastAPI

logger = logging.getLogger(__name__)


class ApiListener:
    """Serves an ASGI app on ``host:port`` and can close the port for a while.

    ``refuse_for`` stops the uvicorn server, which closes the listening socket
    (new connections get ECONNREFUSED) and lets in-flight requests finish for
    at most the refusal time; then a new uvicorn server is started on a fresh
    socket on the same port with the same app object, so engine, metrics and
    fault state survive.
    """

    def __init__(self, host: str, port: int, log_level: str = "info") -> None:
        self.host = host
        self.port = port
        self._log_level = log_level
        self._server: uvicorn.Server | None = None
        self._reopen_at: float | None = None

    def refuse_for(self, duration_s: float) -> None:
        """Close the port now and reopen it ``duration_s`` seconds later."""
        if self._server is None:
            raise RuntimeError("listener is not serving")
        self._reopen_at = asyncio.get_running_loop().time() + duration_s
        self._server.config.timeout_graceful_shutdown = duration_s  # type: ignore[assignment]
        self._server.should_exit = True

    async def serve(self, app: FastAPI) -> None:
        """Serve until the process is signalled, reopening after each refusal."""
        loop = asyncio.get_running_loop()
        while True:
            sock = self._bind()
            config = uvicorn.Config(app, log_level=self._log_level,
                                    # App state must outlive each server.
                                    lifespan="off")
            self._server = uvicorn.Server(config)
            logger.info("LLM emulator listening on http://%s:%d", self.host, self.port)
            await self._server.serve(sockets=[sock])
            # SIGINT/SIGTERM re-raise out of serve(); getting here means refuse_for().
            if self._reopen_at is None:
                return
            await asyncio.sleep(self._reopen_at - loop.time())
            self._reopen_at = None

    def _bind(self) -> socket.socket:
        family, kind, proto, _, address = socket.getaddrinfo(
            self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        # proto must be IPPROTO_TCP (not 0) or asyncio skips TCP_NODELAY on accepted
        # connections, and Nagle + delayed ACK then hold the first SSE chunk ~40 ms.
        sock = socket.socket(family, kind, proto)
        # Lets the port rebind right away although closed connections sit in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        self.port = sock.getsockname()[1]  # resolve port 0 once, keep it on reopen
        return sock
