"""The ``[detect]`` section of the shield's config (owned by the detector)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class DetectSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
