"""Burning text into evidence images: Chinese through a CJK TrueType font, else OpenCV's ASCII.

OpenCV's Hershey fonts have no CJK glyphs, so Chinese labels need Pillow and a CJK font.
"""

from __future__ import annotations

import logging
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

log = logging.getLogger(__name__)

Color = tuple[int, int, int]  # B, G, R


class TextRenderer(Protocol):
    renders_chinese: bool

    def measure(self, text: str, height_px: int) -> tuple[int, int]:
        """(width, height) in pixels that :meth:`draw` covers."""
        ...

    def draw(
        self, image: np.ndarray, text: str, top_left: tuple[int, int], height_px: int, color: Color
    ) -> None:
        """Draw into ``image`` in place."""
        ...


class HersheyText:
    """OpenCV's built-in vector font: always available, ASCII only."""

    renders_chinese = False
    _FACE = cv2.FONT_HERSHEY_SIMPLEX

    def measure(self, text: str, height_px: int) -> tuple[int, int]:
        (width, height), baseline = cv2.getTextSize(
            text, self._FACE, self._scale(height_px), self._thickness(height_px)
        )
        return width, height + baseline

    def draw(
        self, image: np.ndarray, text: str, top_left: tuple[int, int], height_px: int, color: Color
    ) -> None:
        scale, thickness = self._scale(height_px), self._thickness(height_px)
        (_, height), _ = cv2.getTextSize(text, self._FACE, scale, thickness)
        origin = (top_left[0], top_left[1] + height)  # putText anchors at the baseline
        cv2.putText(image, text, origin, self._FACE, scale, color, thickness, cv2.LINE_AA)

    def _scale(self, height_px: int) -> float:
        return cv2.getFontScaleFromHeight(self._FACE, height_px, self._thickness(height_px))

    @staticmethod
    def _thickness(height_px: int) -> int:
        return max(1, height_px // 12)


class TrueTypeText:
    """A TrueType/OpenType font drawn with Pillow; give it a font that has CJK glyphs."""

    renders_chinese = True

    def __init__(self, font_path: str | Path) -> None:
        self.font_path = Path(font_path)
        _font(self.font_path, 16)  # a missing or unreadable font fails now, not at a case

    def measure(self, text: str, height_px: int) -> tuple[int, int]:
        _, _, right, bottom = _font(self.font_path, height_px).getbbox(text)
        return int(right), int(bottom)

    def draw(
        self, image: np.ndarray, text: str, top_left: tuple[int, int], height_px: int, color: Color
    ) -> None:
        picture = Image.fromarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        ImageDraw.Draw(picture).text(
            top_left, text, font=_font(self.font_path, height_px), fill=color[::-1]
        )
        image[:] = cv2.cvtColor(np.asarray(picture), cv2.COLOR_RGB2BGR)


def find_cjk_font() -> Path | None:
    """A font fontconfig lists for Chinese and English, the same one on every run; None if none.

    Labels mix Chinese with digits and Latin letters, so a CJK-only fallback font (Droid Sans
    Fallback has no Latin glyphs) would draw the numbers as boxes.
    """
    try:
        listing = subprocess.run(
            ["fc-list", "--format", "%{file}\t%{lang}\n", ":lang=zh"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None
    paths = sorted({file for file, _, langs in (line.partition("\t") for line in listing.splitlines())
                    if file.strip() and "en" in langs.split("|")})
    return Path(paths[0]) if paths else None


def default_text_renderer() -> TextRenderer:
    font_path = find_cjk_font()
    if font_path is None:
        log.warning("no CJK font found (fc-list :lang=zh); evidence labels use English rule types")
        return HersheyText()
    return TrueTypeText(font_path)


@lru_cache(maxsize=32)
def _font(path: Path, size_px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size_px)
