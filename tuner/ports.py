"""Loopback port checks."""

from __future__ import annotations

import socket
import time

from tuner.errors import UsageError


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, picked by the kernel (a later bind may still race for it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something already listens on host:port (or the port cannot be bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def require_free(ports: dict[str, int]) -> None:
    """Raise a UsageError naming the first port of `ports` (name -> port) that is taken."""
    for name, port in ports.items():
        if port_in_use(port):
            raise UsageError(f"port {port} ({name}) is already in use on 127.0.0.1: free it or choose another port")


def wait_listening(port: int, timeout_s: float, host: str = "127.0.0.1") -> bool:
    """Wait until a TCP connect to host:port succeeds; False on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    return False
