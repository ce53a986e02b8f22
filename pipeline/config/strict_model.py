"""The base of every camera-file model."""

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    # Unknown keys fail so that a typo cannot silently fall back to a default; frozen because one
    # loaded config is shared by every stage of a camera.
    model_config = ConfigDict(extra="forbid", frozen=True)
