"""Ingest: open camera sources, decode at the analysis rate, keep recent packets for clips."""

from pipeline.ingest.clip import ClipError, PacketRing
from pipeline.ingest.dual import DualRing
from pipeline.ingest.live import LiveSource, StateChange
from pipeline.ingest.main_stream import Recorder, SubMainSource
from pipeline.ingest.picture import to_bgr
from pipeline.ingest.source import SourceError, SourceStats, decode, is_live_url, require_an_openable_camera

__all__ = ["ClipError", "DualRing", "LiveSource", "PacketRing", "Recorder", "SourceError", "SourceStats",
           "StateChange", "SubMainSource", "decode", "is_live_url", "require_an_openable_camera", "to_bgr"]
