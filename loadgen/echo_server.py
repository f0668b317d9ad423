"""A small, fast local HTTP server to test and calibrate the load generator against.

`python -m loadgen.echo_server --port 8999 [--delay-ms 5] [--stall-every 5 --stall-for 2]
[--tokens 8 --itl-ms 10]` answers every request with a small JSON body after `--delay-ms`.
During a stall (the last `--stall-for` seconds of every `--stall-every`) it answers nothing
until the stall ends: the coordinated-omission test's server. A JSON body with
`"stream": true` gets an SSE answer shaped like the app's /rag stream (sources, `--tokens`
deltas `--itl-ms` apart, [DONE]). GET /v1/models lists `--adapters` LoRA ids. Raw asyncio
(uvloop when installed) so one core serves well over 10,000 requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

_OK = b'{"ok":true}'


def _response(status: str, body: bytes, ctype: bytes = b"application/json") -> bytes:
    return (b"HTTP/1.1 " + status.encode() + b"\r\nContent-Type: " + ctype + b"\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


class EchoServer:
    """Settings plus the request handling; one protocol instance per connection."""

    def __init__(self, delay_ms: float = 0.0, stall_every: float = 0.0, stall_for: float = 0.0,
                 tokens: int = 8, itl_ms: float = 10.0, adapters: int = 0):
        self.delay_s, self.stall_every, self.stall_for = delay_ms / 1000, stall_every, stall_for
        self.tokens, self.itl_s = tokens, itl_ms / 1000
        self.models = json.dumps({"object": "list", "data": [{"id": f"lora-{i:02d}"} for i in range(adapters)]}).encode()
        self.t0 = time.monotonic()

    def stall_left(self) -> float:
        """Seconds until the current stall ends (0 outside a stall)."""
        if not self.stall_every:
            return 0.0
        phase = (time.monotonic() - self.t0) % self.stall_every
        start = self.stall_every - self.stall_for
        return self.stall_every - phase if phase >= start else 0.0

    async def answer(self, method: bytes, path: bytes, body: bytes, write) -> None:
        """Wait out any delay and stall, then write the answer."""
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        while (left := self.stall_left()) > 0:
            await asyncio.sleep(left)
        if method == b"GET" and path.startswith(b"/v1/models"):
            write(_response("200 OK", self.models))
        elif b'"stream": true' in body or b'"stream":true' in body:
            await self._stream(write)
        else:
            write(_response("200 OK", _OK))

    async def _stream(self, write) -> None:
        write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")

        def chunk(data: bytes) -> None:
            write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

        chunk(b'data: {"sources": [1, 2]}\n\n')
        for i in range(self.tokens):
            await asyncio.sleep(self.itl_s)
            chunk(b'data: {"delta": " w%d"}\n\n' % i)
        chunk(b"data: [DONE]\n\n")
        write(b"0\r\n\r\n")


class _Conn(asyncio.Protocol):
    def __init__(self, server: EchoServer):
        self.server, self.buf, self.transport = server, b"", None
        self.queue: asyncio.Queue = asyncio.Queue()
        self.worker = None

    def connection_made(self, transport):
        self.transport = transport
        self.worker = asyncio.ensure_future(self._serve())

    def connection_lost(self, exc):
        self.worker.cancel()

    def data_received(self, data: bytes):
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head = self.buf[:end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4:end + 4 + length]
            self.buf = self.buf[end + 4 + length:]
            method, path, *_ = head.split(b"\r\n", 1)[0].split(b" ")
            self.queue.put_nowait((method, path, body))

    async def _serve(self):
        while True:  # answers in request order, as HTTP/1.1 keep-alive needs
            method, path, body = await self.queue.get()
            if self.transport.is_closing():
                return
            await self.server.answer(method, path, body, self.transport.write)


async def serve(host: str, port: int, server: EchoServer) -> None:
    """Serve until cancelled."""
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(lambda: _Conn(server), host, port, backlog=4096)
    print(f"echo server listening on http://{host}:{port}", flush=True)
    async with srv:
        await srv.serve_forever()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8999)
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.add_argument("--stall-every", type=float, default=0.0, help="seconds between the starts of stalls (0: none)")
    p.add_argument("--stall-for", type=float, default=0.0, help="seconds each stall lasts")
    p.add_argument("--tokens", type=int, default=8, help="SSE deltas per streamed answer")
    p.add_argument("--itl-ms", type=float, default=10.0, help="gap between streamed deltas")
    p.add_argument("--adapters", type=int, default=0, help="LoRA ids listed by GET /v1/models")
    a = p.parse_args(argv)
    if a.stall_for and not 0 < a.stall_for < a.stall_every:
        p.error("--stall-for must be > 0 and < --stall-every")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    server = EchoServer(a.delay_ms, a.stall_every, a.stall_for, a.tokens, a.itl_ms, a.adapters)
    try:
        asyncio.run(serve(a.host, a.port, server))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
