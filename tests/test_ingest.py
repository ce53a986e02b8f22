"""Ingest: sampling at the analysis rate on stream time, looping, clips, and bad sources."""

from __future__ import annotations

import io
import itertools
import time

import av
import cv2
import numpy as np
import pytest
from support import CAR_VIDEO, SAMPLE_VIDEO

from pipeline.ingest import ClipError, PacketRing, SourceError, SourceStats, decode, to_bgr
from pipeline.ingest.source import FrameSampler


def test_sampler_picks_every_third_frame_of_15fps_at_5fps():
    sampler = FrameSampler(5.0)
    picked = [i for i in range(30) if sampler.take(i / 15.0)]
    assert picked == list(range(0, 30, 3))


def test_sampler_restarts_after_a_gap_instead_of_bursting():
    sampler = FrameSampler(5.0)
    assert sampler.take(0.0)
    assert sampler.take(10.0)  # a 10 s stall
    assert not sampler.take(10.04)
    assert sampler.take(10.2)


def colour_chart(width: int = 96, height: int = 64) -> np.ndarray:
    """Saturated hues across, brightness down: where colour matrices and ranges differ most."""
    hue = np.tile(np.linspace(0, 179, width, dtype=np.uint8), (height, 1))
    value = np.repeat(np.linspace(40, 255, height, dtype=np.uint8)[:, None], width, axis=1)
    hsv = np.dstack([hue, np.full_like(hue, 255), value])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def camera_picture(image: np.ndarray, *, colorspace: int, color_range: int, layout: str = "yuv420p") -> av.VideoFrame:
    """``image`` as a camera's 4:2:0 picture, encoded with the matrix and range it is tagged with."""
    picture = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(
        format=layout, dst_colorspace=1 if colorspace == 1 else 5, dst_color_range=color_range)
    picture.colorspace, picture.color_range = colorspace, color_range
    return picture


def mean_error(image: np.ndarray, chart: np.ndarray) -> float:
    # 4:2:0 halves the colour resolution: compare away from the chart's edges
    return float(np.abs(image.astype(int) - chart)[8:-8, 8:-8].mean())


@pytest.mark.parametrize("layout", ["yuv420p", "nv12"])  # nv12: what hardware decoders hand back
@pytest.mark.parametrize("colorspace", [2, 5, 6], ids=["untagged", "bt470bg", "smpte170m"])
def test_a_bt601_camera_picture_keeps_its_colours(colorspace, layout):
    chart = colour_chart()
    image = to_bgr(camera_picture(chart, colorspace=colorspace, color_range=1, layout=layout))
    assert image.shape == chart.shape and image.dtype == np.uint8
    assert mean_error(image, chart) <= 2.5


@pytest.mark.parametrize(("colorspace", "color_range"), [(1, 1), (5, 2)], ids=["bt709", "full-range"])
def test_hd_and_full_range_camera_pictures_are_read_as_tagged(colorspace, color_range):
    chart = colour_chart()
    picture = camera_picture(chart, colorspace=colorspace, color_range=color_range)
    image = to_bgr(picture)
    assert mean_error(image, chart) <= 2.5
    as_if_bt601 = camera_picture(chart, colorspace=colorspace, color_range=color_range)
    as_if_bt601.colorspace, as_if_bt601.color_range = 2, 1
    assert mean_error(to_bgr(as_if_bt601), chart) > 4  # the tag is what made it right


def test_decode_carries_stream_time_and_analysis_rate():
    stats = SourceStats()
    frames = list(decode(str(SAMPLE_VIDEO), camera_id="cam", analysis_fps=5, stats=stats))
    assert stats.received == 2250  # 150 s at 15 fps
    assert len(frames) == 750
    assert frames[0].pts_s == 0.0
    assert frames[-1].pts_s == pytest.approx(149.8, abs=0.01)
    assert all(b.pts_s - a.pts_s == pytest.approx(0.2, abs=1e-3) for a, b in itertools.pairwise(frames))
    assert frames[0].image.shape == (540, 960, 3)
    assert [f.seq for f in frames[:3]] == [0, 1, 2]


def test_replay_wall_clock_follows_the_scene_not_the_machine():
    frames = decode(str(SAMPLE_VIDEO), camera_id="cam", analysis_fps=1, start_wall=1_000_000.0)
    first, second = next(frames), next(frames)
    assert (first.wall_ts, second.wall_ts) == (1_000_000.0, 1_000_001.0)


def test_looping_keeps_stream_time_growing(shared):
    frames = decode(str(CAR_VIDEO), camera_id="cam", analysis_fps=2, loop=True)
    pts = []
    for frame in frames:
        pts.append(frame.pts_s)
        if frame.pts_s > 65:  # the video is 30 s long: this is its third pass
            break
    assert all(b > a for a, b in itertools.pairwise(pts))
    assert len(pts) == pytest.approx(65 * 2, abs=3)


@pytest.mark.realtime  # 2 s of the sample at its own pace
def test_realtime_pacing_runs_at_the_video_rate():
    started = time.monotonic()
    for frame in decode(str(SAMPLE_VIDEO), camera_id="cam", analysis_fps=5, realtime=True):
        if frame.pts_s >= 2.0:
            break
    assert time.monotonic() - started >= 1.9


def test_clip_covers_the_requested_span_and_starts_on_a_keyframe():
    ring = PacketRing(seconds=30)
    for frame in decode(str(SAMPLE_VIDEO), camera_id="cam", analysis_fps=5, ring=ring):
        if frame.pts_s >= 45:
            break
    clip = ring.clip(35.0, 44.0)
    with av.open(io.BytesIO(clip)) as container:
        pictures = list(container.decode(video=0))
    assert pictures[0].key_frame
    span = pictures[-1].time - pictures[0].time
    assert 9.0 <= span <= 11.5  # starts up to one GOP (2 s) before the span
    assert pictures[0].width == 960


def test_clip_of_a_span_no_longer_held_fails_clearly():
    ring = PacketRing(seconds=10)
    for frame in decode(str(SAMPLE_VIDEO), camera_id="cam", analysis_fps=5, ring=ring):
        if frame.pts_s >= 40:
            break
    with pytest.raises(ClipError, match="no keyframe"):
        ring.clip(1.0, 5.0)


def test_missing_file_names_camera_and_path(tmp_path):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(SourceError, match=r"camera cam-7: video file not found: .*nope\.mp4"):
        next(decode(str(missing), camera_id="cam-7", analysis_fps=5))


def test_a_file_url_reads_the_local_file_it_names(tmp_path):
    video = tmp_path / "双山 street.mp4"  # percent-escaped in its file:// URL
    video.symlink_to(SAMPLE_VIDEO)
    frame = next(decode(video.as_uri(), camera_id="cam", analysis_fps=5))
    assert frame.seq == 0 and frame.image.shape[2] == 3


@pytest.mark.parametrize("url", ["ftp://admin:hunter2@nvr.example/street.mp4", "file://nvr.example/street.mp4"])
def test_a_url_no_camera_is_read_from_is_refused_by_its_scheme_without_its_password(url):
    with pytest.raises(SourceError, match=r"camera cam-7: .*:// is not a camera URL") as refused:
        next(decode(url, camera_id="cam-7", analysis_fps=5))
    assert "hunter2" not in str(refused.value)


def test_a_file_that_is_not_video_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(SourceError, match=r"camera cam: cannot open .*junk\.mp4"):
        next(decode(str(junk), camera_id="cam", analysis_fps=5))


def test_truncated_video_yields_what_it_holds_then_stops(tmp_path):
    data = SAMPLE_VIDEO.read_bytes()
    # an MP4 cut short loses its index: the frames before the cut must still come out, or a clear error
    truncated = tmp_path / "cut.ts"
    with av.open(str(SAMPLE_VIDEO)) as src, av.open(str(truncated), "w", format="mpegts") as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is None:
                continue
            packet.stream = out
            dst.mux(packet)
    cut = truncated.read_bytes()
    truncated.write_bytes(cut[: len(cut) // 2] + b"\x00" * 5000)
    assert len(data) > 0
    frames = []
    try:
        for frame in decode(str(truncated), camera_id="cam", analysis_fps=5):
            frames.append(frame.pts_s)
    except SourceError as exc:
        assert "camera cam" in str(exc)
    assert 60 <= frames[-1] <= 90  # about half of the 150 s survived


def _remux_ts(seconds: float, out) -> None:
    """The sample's first ``seconds`` as MPEG-TS, timestamps starting at 0."""
    with av.open(str(SAMPLE_VIDEO)) as src, av.open(str(out), "w", format="mpegts") as dst:
        stream = src.streams.video[0]
        target = dst.add_stream_from_template(stream)
        for packet in src.demux(stream):
            if packet.dts is None or packet.pts * stream.time_base > seconds:
                continue
            packet.stream = target
            dst.mux(packet)


def test_a_timestamp_reset_inside_a_stream_is_bridged_not_followed(tmp_path):
    # two 10 s segments back to back, both stamped from 0: what an encoder restart looks like
    first, second = tmp_path / "a.ts", tmp_path / "b.ts"
    _remux_ts(10.0, first)
    _remux_ts(10.0, second)
    joined = tmp_path / "joined.ts"
    joined.write_bytes(first.read_bytes() + second.read_bytes())
    pts = []
    stats = SourceStats()
    # the join breaks the transport stream's continuity counters: FFmpeg flags the packet there
    # corrupt, so the file is reported damaged once all of it has been decoded
    with pytest.raises(SourceError, match=r"camera cam: video file .*joined\.ts is damaged: corrupt data at 9.8s,"):
        for frame in decode(str(joined), camera_id="cam", analysis_fps=5, stats=stats):
            pts.append(frame.pts_s)
    assert stats.resync_skipped <= 2  # the next packet there is a keyframe: next to nothing is lost
    assert all(b > a for a, b in itertools.pairwise(pts))
    assert pts[-1] > 19.0 and len(pts) >= 95  # both segments analysed, on one growing clock


def test_a_reconnected_stream_continues_the_camera_clock_for_frames_and_clips():
    ring = PacketRing(seconds=30)
    frames = decode(str(SAMPLE_VIDEO), camera_id="cam", analysis_fps=5, ring=ring, origin_s=500.0)
    first = next(frames)
    for frame in frames:
        if frame.pts_s >= 515.0:
            break
    assert first.pts_s == 500.0
    with av.open(io.BytesIO(ring.clip(506.0, 512.0))) as container:
        pictures = list(container.decode(video=0))
    assert 6.0 <= pictures[-1].time - pictures[0].time <= 8.5


def test_source_errors_never_print_a_camera_password():
    with pytest.raises(SourceError) as error:
        next(decode("rtsp://admin:s3cret@127.0.0.1:9/stream", camera_id="cam", analysis_fps=5))
    assert "s3cret" not in str(error.value)
    assert "admin:***@127.0.0.1:9" in str(error.value)
