"""One scene at two resolutions, as a camera's main stream and sub-stream, for the detect_url tests.

The main stream is a cut of the sample street (960x540, its packets copied); the sub-stream the
same frames re-encoded at 640x360 (H.264 with B-frames, a keyframe every 2 s as the sample). Both
start at the same picture and have the same frame times, so a time in one is that time in the other.
"""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np
from support import SAMPLE_VIDEO, cut_video

SUB_SIZE = (640, 360)
MAIN_SIZE = (960, 540)
FPS = 15
# The sample from 8 s on: the first car parks 2 s in and stays to the end of an 18 s cut; nothing
# else stands in the parking zone.
STREET_FROM_S = 8.0
STREET_S = 18.0


def sub_main_pair(folder: Path, *, start_s: float = STREET_FROM_S, seconds: float = STREET_S) -> tuple[Path, Path]:
    """(main, sub) videos of the sample from ``start_s`` (a keyframe) for ``seconds``."""
    folder.mkdir(parents=True, exist_ok=True)
    main = cut_video(SAMPLE_VIDEO, folder / "main.mp4", start_s=start_s, seconds=start_s + seconds)
    sub = folder / "sub.mp4"
    with av.open(str(main)) as source, av.open(str(sub), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height = SUB_SIZE
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "veryfast", "g": str(2 * FPS), "keyint_min": str(2 * FPS),
                          "sc_threshold": "0", "bf": "2"}
        for index, frame in enumerate(source.decode(video=0)):
            picture = av.VideoFrame.from_ndarray(frame.to_ndarray(format="yuv420p", width=SUB_SIZE[0],
                                                                  height=SUB_SIZE[1]), format="yuv420p")
            picture.pts, picture.time_base = index, fractions.Fraction(1, FPS)
            out.mux(stream.encode(picture))
        out.mux(stream.encode(None))
    return main, sub


def small(image: np.ndarray) -> np.ndarray:
    """A BGR picture as a 64x36 grey thumbnail, to compare pictures of the two streams."""
    import cv2

    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return cv2.resize(grey, (64, 36), interpolation=cv2.INTER_AREA).astype(np.float32)


class Positions:
    """Where in the scene a picture is: the time of the most alike frame of a video (either
    stream's: they share their frame times), by the mean absolute difference of thumbnails."""

    def __init__(self, video: Path) -> None:
        times, images = [], []
        with av.open(str(video)) as container:
            for frame in container.decode(video=0):
                times.append(float(frame.time))
                images.append(small(frame.to_ndarray(format="bgr24")))
        self.times, self.images = np.array(times), np.stack(images)

    def of(self, image: np.ndarray) -> tuple[float, float]:
        """(time, mean absolute difference of the best match)."""
        errors = np.abs(self.images - small(image)).mean(axis=(1, 2))
        best = int(errors.argmin())
        return float(self.times[best]), float(errors[best])
