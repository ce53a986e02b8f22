"""The base of every camera-file model, and the number types they share."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, Strict

# Longest duration a camera file may set; none of its clocks means anything beyond a week, and
# a bound keeps 1e308 out of the arithmetic that adds durations to timestamps.
MAX_DURATION_S = 7 * 24 * 3600
# Strict: YAML's `yes` or "60" is a typo here, not a duration.
Seconds = Annotated[float, Strict(), Field(le=MAX_DURATION_S)]


class StrictModel(BaseModel):
    # Unknown keys fail so that a typo cannot silently fall back to a default; frozen because one
    # loaded config is shared by every stage of a camera. `.inf` (valid YAML) passes every lower
    # bound and means nothing as a duration or a fraction, so every number must be finite.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
