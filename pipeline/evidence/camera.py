"""What the evidence writer needs to know about a camera, independent of how it is configured."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

REQUIRED_LOCATION_KEYS = ("lat", "lon", "address", "grid_code", "timezone")


@dataclass(frozen=True, slots=True)
class CameraInfo:
    camera_id: str
    name: str
    # lat, lon (WGS-84 degrees), address, grid_code (the 网格 of the district's 单元网格 map),
    # timezone (IANA name, e.g. Asia/Shanghai); extra keys are carried into the case as they are.
    location: dict[str, Any]

    def __post_init__(self) -> None:
        missing = [key for key in REQUIRED_LOCATION_KEYS if key not in self.location]
        if missing:
            raise ValueError(f"camera {self.camera_id!r} location lacks {', '.join(missing)}")
        ZoneInfo(self.location["timezone"])  # an unknown zone fails at startup, not at a case

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.location["timezone"])
