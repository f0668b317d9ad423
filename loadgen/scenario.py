"""How a scenario file declares its traffic and its command-line options, without importing Locust.

A scenario is a plain locustfile:

    from loadgen.openloop import OpenLoopShape, OpenLoopUser  # noqa: F401 - Locust finds the user and shape here
    from loadgen.scenario import option, scenario
    from loadgen.shapes import Ramp

    @scenario(option("--rate-end", type=float, default=8.0, help="rate at the end of the ramp, requests/s"),
              defaults={"rate": 1.0})
    def traffic(opts, seconds):
        return Ramp(start_rps=opts.rate, end_rps=opts.rate_end, seconds=seconds)

`option(...)` takes what Locust's `parser.add_argument` takes; `defaults` overrides defaults of
the options every scenario shares (loadgen/options.py). Locust imports the file, the decorator
records the scenario in `registry`, and loadgen.openloop adds its options to Locust's parser (for
`--help`, the web UI's form and the workers) and builds its traffic from the parsed options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from loadgen.shapes import Shape
from loadgen.traces import TraceData


@dataclass(frozen=True)
class Traffic:
    """What a scenario sends: a shape, and for trace replay the trace's token counts."""

    shape: Shape
    trace: TraceData | None = None


@dataclass(frozen=True)
class Option:
    """One command-line option: the arguments of Locust's `parser.add_argument`."""

    flags: tuple[str, ...]
    kwargs: dict[str, Any]


def option(*flags: str, **kwargs: Any) -> Option:
    """A scenario option, e.g. `option("--burst-rps", type=float, default=8.0, help="...")`."""
    return Option(flags, kwargs)


@dataclass(frozen=True)
class Scenario:
    """A locustfile's `traffic(opts, seconds) -> Shape | Traffic`, its own options and its shared-option defaults."""

    name: str
    traffic: Callable[[Any, float], Shape | Traffic]
    options: tuple[Option, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)


class ScenarioRegistry:
    """The scenario of the locustfile loaded last.

    Locust imports a locustfile as a plain module and hands back only its users and shapes, so the
    decorator reports here; a loader that loads more than one file clears it before each load.
    """

    def __init__(self) -> None:
        self.current: Scenario | None = None

    def register(self, declared: Scenario) -> None:
        self.current = declared

    def clear(self) -> None:
        self.current = None


registry = ScenarioRegistry()


def scenario(*options: Option, defaults: dict[str, Any] | None = None) -> Callable:
    """Declare the decorated `fn(opts, seconds) -> Shape | Traffic` as this locustfile's traffic."""
    for o in options:
        if not isinstance(o, Option):  # a bare `@scenario` passes the function itself
            raise TypeError(f"scenario() takes option(...) values, not {o!r}; write @scenario() for none")

    def declare(fn: Callable) -> Callable:
        registry.register(Scenario(name=fn.__module__, traffic=fn, options=options, defaults=dict(defaults or {})))
        return fn

    return declare
