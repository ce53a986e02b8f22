"""Camera definitions: the schema of ``streams/*.yaml`` and its loader."""

from .camera import CameraConfig, Location, ZoneConfig
from .hours import TimeWindow
from .loader import ConfigError, camera_settings, load_camera, load_camera_files, load_cameras
from .rules import BinOverflowRule, IllegalParkingRule, NonmotorParkingRule, RuleConfig, StallEncroachmentRule
from .workspace import DEFAULT_WORKSPACE, Workspace

__all__ = [
    "DEFAULT_WORKSPACE",
    "BinOverflowRule",
    "CameraConfig",
    "ConfigError",
    "IllegalParkingRule",
    "Location",
    "NonmotorParkingRule",
    "RuleConfig",
    "StallEncroachmentRule",
    "TimeWindow",
    "Workspace",
    "ZoneConfig",
    "camera_settings",
    "load_camera",
    "load_camera_files",
    "load_cameras",
]
