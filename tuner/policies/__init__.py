"""The autoscaling controllers as pure, clock-injected decisions: plain data in, plain data
out. The simulator, the tuner and the tests call the same functions."""

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    """Base of the policies' plain data: immutable, so a decision can never edit its input."""

    model_config = ConfigDict(frozen=True)
