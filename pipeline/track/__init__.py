"""Track: give each detection a persistent id across frames (ByteTrack from Roboflow's `trackers`)."""

from pipeline.track.bytetrack import Tracker

__all__ = ["Tracker"]
