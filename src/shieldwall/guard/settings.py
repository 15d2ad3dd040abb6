"""The ``[guard]`` section of the shield's config (owned by the guard)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class GuardSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
