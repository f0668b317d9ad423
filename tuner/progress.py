"""Where a long command reports its progress: the CLI's progress bar, or nothing."""

from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    """A phase begins (with its length when known); time passes within it."""

    def phase(self, name: str, seconds: float | None) -> None: ...

    def tick(self, elapsed_s: float) -> None: ...


class Silent:
    """A reporter that shows nothing."""

    def phase(self, name: str, seconds: float | None) -> None:
        pass

    def tick(self, elapsed_s: float) -> None:
        pass
