"""PNG charts of the results: matplotlib when it is installed (it is no dependency), else OpenCV."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

WIDTH, HEIGHT, MARGIN = 900, 520, 70
COLOURS = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148), (75, 86, 140)]  # BGR


def _matplotlib():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def bar_chart(path: Path, title: str, labels: list[str], values: list[float], unit: str, *,
              use_matplotlib: bool = True) -> Path:
    """One bar per label, its value written above it."""
    plt = _matplotlib() if use_matplotlib else None
    if plt is not None:
        figure, axes = plt.subplots(figsize=(9, 5.2))
        colours = [COLOURS[index % len(COLOURS)] for index in range(len(values))]
        bars = axes.bar(labels, values, color=[f"#{r:02x}{g:02x}{b:02x}" for b, g, r in colours])
        axes.bar_label(bars, fmt="%.1f")
        axes.set_title(title)
        axes.set_ylabel(unit)
        figure.autofmt_xdate(rotation=15)
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)
        return path
    canvas = _blank(title)
    top = max(values, default=0) or 1.0
    slot = (WIDTH - 2 * MARGIN) / max(1, len(values))
    for index, (label, value) in enumerate(zip(labels, values, strict=True)):
        x1 = int(MARGIN + index * slot + slot * 0.15)
        x2 = int(MARGIN + (index + 1) * slot - slot * 0.15)
        y = int(HEIGHT - MARGIN - (HEIGHT - 2 * MARGIN) * value / top)
        cv2.rectangle(canvas, (x1, y), (x2, HEIGHT - MARGIN), COLOURS[index % len(COLOURS)], -1)
        _text(canvas, f"{value:.1f}", (x1, y - 8))
        _text(canvas, label[:18], (x1, HEIGHT - MARGIN + 20), scale=0.4)
    _text(canvas, unit, (8, MARGIN - 10), scale=0.45)
    return _write(path, canvas)


def line_chart(path: Path, title: str, series: dict[str, tuple[list[float], list[float]]], x_label: str,
               y_label: str, *, limit: float | None = None, use_matplotlib: bool = True) -> Path:
    """One line per series; ``limit`` draws a dashed horizontal line (a threshold)."""
    plt = _matplotlib() if use_matplotlib else None
    if plt is not None:
        figure, axes = plt.subplots(figsize=(9, 5.2))
        for name, (xs, ys) in series.items():
            axes.plot(xs, ys, marker="o", label=name)
        if limit is not None:
            axes.axhline(limit, linestyle="--", color="grey")
        axes.set_title(title)
        axes.set_xlabel(x_label)
        axes.set_ylabel(y_label)
        axes.legend()
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)
        return path
    canvas = _blank(title)
    points = [(x, y) for xs, ys in series.values() for x, y in zip(xs, ys, strict=True)]
    x_top = max((x for x, _ in points), default=1) or 1
    y_top = max([y for _, y in points] + [limit or 0]) or 1.0

    def at(x: float, y: float) -> tuple[int, int]:
        return (int(MARGIN + (WIDTH - 2 * MARGIN) * x / x_top), int(HEIGHT - MARGIN - (HEIGHT - 2 * MARGIN) * y / y_top))

    if limit is not None:
        for x in range(MARGIN, WIDTH - MARGIN, 12):
            cv2.line(canvas, (x, at(0, limit)[1]), (x + 6, at(0, limit)[1]), (128, 128, 128), 1)
    for index, (name, (xs, ys)) in enumerate(series.items()):
        colour = COLOURS[index % len(COLOURS)]
        line = np.array([at(x, y) for x, y in zip(xs, ys, strict=True)], np.int32)
        cv2.polylines(canvas, [line], False, colour, 2, cv2.LINE_AA)
        for point in line:
            cv2.circle(canvas, tuple(int(v) for v in point), 4, colour, -1)
        _text(canvas, name, (WIDTH - MARGIN - 230, MARGIN + 18 * index), colour=colour, scale=0.45)
    _text(canvas, f"{x_label} (to {x_top:g})", (WIDTH // 2 - 80, HEIGHT - 20), scale=0.45)
    _text(canvas, f"{y_label} (to {y_top:.3g})", (8, MARGIN - 10), scale=0.45)
    return _write(path, canvas)


def _blank(title: str) -> np.ndarray:
    canvas = np.full((HEIGHT, WIDTH, 3), 255, np.uint8)
    cv2.line(canvas, (MARGIN, HEIGHT - MARGIN), (WIDTH - MARGIN, HEIGHT - MARGIN), (0, 0, 0), 1)
    cv2.line(canvas, (MARGIN, MARGIN), (MARGIN, HEIGHT - MARGIN), (0, 0, 0), 1)
    _text(canvas, title, (MARGIN, 30), scale=0.6)
    return canvas


def _text(canvas: np.ndarray, text: str, origin: tuple[int, int], *, colour=(0, 0, 0), scale: float = 0.5) -> None:
    # OpenCV's fonts are ASCII only: labels are kept in English
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def _write(path: Path, canvas: np.ndarray) -> Path:
    if not cv2.imwrite(str(path), canvas):
        raise OSError(f"cannot write {path}")
    return path
