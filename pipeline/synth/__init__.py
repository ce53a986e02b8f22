"""Synthetic street scenes: the project's own sample video, its ground truth, and training images.

No public street footage with these violations can be shipped, so the project draws its own:
a fixed camera over a road with lanes and sidewalks, traffic, parking cars, a stall, a bin that
overflows. Drawing is plain OpenCV so that scenes are cheap, reproducible from a seed, and every
box in them is exactly known.
"""

from pipeline.synth.actors import CLASSES
from pipeline.synth.render import render_dataset, render_video
from pipeline.synth.scenario import Episode, Scenario, sample_scenario

__all__ = ["CLASSES", "Episode", "Scenario", "render_dataset", "render_video", "sample_scenario"]
