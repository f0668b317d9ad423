"""Latency-model parameters of the emulated LLM server, loaded from YAML profiles."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PROFILES_DIR = Path(__file__).parent / "profiles"
DEFAULT_PROFILE = "h100-llama3-8b"


class LatencyProfile(BaseModel):
    """Parameters of the continuous-batching latency model.

    One engine step lasts
    ``step_base_ms + step_per_seq_ms * decode_seqs + prefill_per_token_ms * prefill_tokens``.
    """

    # Typos in a profile file must fail loudly instead of silently using a default.
    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: str = Field("emulated-llama-3.1-8b", min_length=1)
    source: str = Field("", description="Where the numbers come from.")
    max_num_seqs: int = Field(256, ge=1, le=65536)
    max_num_batched_tokens: int = Field(8192, ge=1, le=1_048_576)
    step_base_ms: float = Field(6.5, gt=0, le=10_000)
    step_per_seq_ms: float = Field(0.06, ge=0, le=1_000)
    prefill_per_token_ms: float = Field(0.04, ge=0, le=1_000)
    max_model_len: int = Field(8192, ge=2, le=10_000_000)
    default_max_tokens: int = Field(128, ge=1)

    @model_validator(mode="after")
    def _check_consistency(self) -> LatencyProfile:
        # Same constraint vLLM enforces: every running sequence must be able to
        # decode one token per step, or decodes would starve.
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise ValueError(
                f"max_num_batched_tokens ({self.max_num_batched_tokens}) must be >= "
                f"max_num_seqs ({self.max_num_seqs})"
            )
        if self.default_max_tokens >= self.max_model_len:
            raise ValueError(
                f"default_max_tokens ({self.default_max_tokens}) must be < "
                f"max_model_len ({self.max_model_len})"
            )
        return self


def available_profiles() -> list[str]:
    """Names of the profiles shipped in ``profiles/``."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def resolve_profile_path(path_or_name: str | Path) -> Path:
    """Map a bare profile name to its bundled YAML file; pass paths through."""
    candidate = Path(path_or_name)
    if candidate.suffix in (".yaml", ".yml") or len(candidate.parts) > 1:
        return candidate
    bundled = PROFILES_DIR / f"{candidate}.yaml"
    if not bundled.is_file():
        raise FileNotFoundError(
            f"unknown latency profile {str(path_or_name)!r}; "
            f"bundled profiles: {', '.join(available_profiles())}"
        )
    return bundled


def load_profile(path_or_name: str | Path = DEFAULT_PROFILE) -> LatencyProfile:
    """Load and validate a latency profile from a YAML file or a bundled profile name.

    Raises ``FileNotFoundError`` for a missing file or unknown name and ``ValueError``
    (naming the file, the field and the allowed range) for invalid contents.
    """
    path = resolve_profile_path(path_or_name)
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"latency profile {path} must be a YAML mapping, got {type(raw).__name__}")
    try:
        return LatencyProfile.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"invalid latency profile {path}: {exc}") from exc
