"""Ingest: open camera sources, decode at the analysis rate, keep recent packets for clips."""

from pipeline.ingest.clip import ClipError, PacketRing
from pipeline.ingest.source import SourceError, SourceStats, decode, is_live_url

__all__ = ["ClipError", "PacketRing", "SourceError", "SourceStats", "decode", "is_live_url"]
