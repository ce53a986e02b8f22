"""Track: give each detection a persistent id across frames (ByteTrack from Roboflow's `trackers`)."""

from pipeline.track.bytetrack import TRACK_LOST_S, Tracker

__all__ = ["TRACK_LOST_S", "Tracker"]
