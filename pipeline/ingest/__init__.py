"""Ingest: open camera sources, decode at the analysis rate, keep recent packets for clips."""

from pipeline.ingest.clip import ClipError, PacketRing
from pipeline.ingest.live import LiveSource, StateChange
from pipeline.ingest.picture import to_bgr
from pipeline.ingest.source import SourceError, SourceStats, decode, is_live_url, require_an_openable_camera

__all__ = ["ClipError", "LiveSource", "PacketRing", "SourceError", "SourceStats", "StateChange", "decode",
           "is_live_url", "require_an_openable_camera", "to_bgr"]
