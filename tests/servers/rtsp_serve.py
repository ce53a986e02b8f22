#!/usr/bin/python3
"""A loopback RTSP server for the tests, run under the system Python (Debian's GStreamer RTSP server).

    rtsp_serve.py --port 8554 --mount street=/path/sample.mp4 [--live-mount cam2=/path/b.mp4 ...]

Serves each H.264 MP4 at ``rtsp://127.0.0.1:PORT/NAME`` (RTP over RTSP-interleaved TCP or UDP,
whatever the client asks), in one of two ways (both repeatable, and they mix):

``--mount NAME=FILE``: every client gets its own pipeline, so each one starts at the file's
beginning, as a camera would start at "now"; the stream ends with the file (no looping: the
media's bus belongs to the RTSP server, so a segment-seek loop would need a media subclass; the
tests' 150 s sample is long enough).

``--live-mount NAME=FILE``: a live camera, whose timeline does not depend on its clients. A
pipeline of our own (``filesrc ! qtdemux ! h264parse ! appsink sync=true``) reads the file in real
time from the server's start, whether anyone watches or not, and loops it forever with segment
seeks; each H.264 access unit goes, untouched (no re-encoding), into the ``appsrc`` of the mount's
one shared media, restamped on that media's clock from a timeline that runs on across the loops,
so a client's timestamps never go back. A client that connects t seconds after the start is sent
the stream from about t (modulo the file's length); its decoder starts at the next keyframe
(SPS/PPS are in the SDP and go before every keyframe). Clients at once see the same moment. A
client leaving neither stops nor pauses the camera for the others, and the next one joins where
the camera is then; its ``Range: npt=0-`` rewinds nothing (the media is live, so not seekable).
The RTSP server still shuts a shared media down when its last client leaves, and builds a new one
for the next client: fed from the same running pipeline, it picks up where the camera is.

Prints one line on stdout once it listens, ``ready WALL``: WALL is the ``time.time()`` of position 0
of every live mount (all in step). Exits 0 on SIGTERM or SIGINT.

Commands on stdin, one a line, each answered by a line on stdout: ``drop NAME`` takes the mount
away (its clients' connections are closed, new ones refused) and ``restore NAME`` brings it back,
as a camera's encoder restarting; a live mount's timeline runs on meanwhile, so the restored mount
is in step with the others again, as the two streams of one camera are (answers ``dropped NAME``,
``restored NAME``, or ``unknown ...``).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer

# config-interval=-1 (SPS/PPS with every IDR) made FFmpeg's depacketizer cut a keyframe of the
# live mounts in two, leaving half a picture; 1 (at most every second, before an IDR) does not
LIVE_LAUNCH = ("( appsrc name=src is-live=true format=time stream-type=stream max-buffers=30 "
               "leaky-type=downstream ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )")


def quoted(path: Path) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def launch_line(path: Path) -> str:
    return (f"( filesrc location={quoted(path)} ! qtdemux ! h264parse ! "
            "rtph264pay name=pay0 pt=96 config-interval=1 )")


class LiveCamera:
    """One live mount: its file played in real time and looped by a pipeline of its own, each
    access unit handed to the appsrc of every playing media of the mount (the factory is shared:
    one at a time, a new one after the last client of the previous one left)."""

    def __init__(self, name: str, path: Path, on_error) -> None:
        self.name = name
        self.pipeline = Gst.parse_launch(
            f"filesrc location={quoted(path)} ! qtdemux ! h264parse ! "
            "appsink name=sink sync=true emit-signals=true max-buffers=4 drop=false")
        self.pipeline.set_name(f"live-{name}")
        self.sink = self.pipeline.get_by_name("sink")
        self.sink.connect("new-sample", self._on_sample)
        self._on_error = on_error
        self._lock = threading.Lock()
        self._appsrcs: set[Gst.Element] = set()
        self.loops = 0  # rounds of the file completed
        self._round_base: int | None = None  # segment base of the round being played
        self._round_start = 0  # where that round starts on the camera's timeline (ns)
        self._round_length = 0
        self.factory = factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(LIVE_LAUNCH)
        factory.set_shared(True)  # one media, so every client sees the same moment
        factory.set_suspend_mode(GstRtspServer.RTSPSuspendMode.NONE)
        factory.connect("media-configure", self._configure)

    def start(self, clock: Gst.Clock) -> None:
        """Prerolls and arms the looping segment seek; :meth:`play` then starts the camera."""
        pipeline = self.pipeline
        pipeline.use_clock(clock)
        pipeline.set_start_time(Gst.CLOCK_TIME_NONE)  # keeps the base time given: mounts in step
        pipeline.get_bus().add_watch(GLib.PRIORITY_DEFAULT, self._on_message)
        if pipeline.set_state(Gst.State.PAUSED) == Gst.StateChangeReturn.FAILURE or \
                pipeline.get_state(10 * Gst.SECOND)[0] != Gst.StateChangeReturn.SUCCESS:
            raise RuntimeError(f"live mount {self.name}: cannot read the file")
        if not pipeline.seek(1.0, Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.SEGMENT,
                             Gst.SeekType.SET, 0, Gst.SeekType.NONE, -1):
            raise RuntimeError(f"live mount {self.name}: the file cannot be seeked, so not looped")
        pipeline.get_state(10 * Gst.SECOND)

    def play(self, base_time: int) -> None:
        """Position 0 of the file is at ``base_time`` on the clock."""
        self.pipeline.set_base_time(base_time)
        self.pipeline.set_state(Gst.State.PLAYING)

    def stop(self) -> None:
        self.pipeline.set_state(Gst.State.NULL)

    def _on_message(self, _bus, message: Gst.Message) -> bool:
        if message.type == Gst.MessageType.SEGMENT_DONE:
            # non-flushing: the next round follows on, without a gap
            self.pipeline.seek(1.0, Gst.Format.TIME, Gst.SeekFlags.SEGMENT,
                               Gst.SeekType.SET, 0, Gst.SeekType.NONE, -1)
        elif message.type in (Gst.MessageType.ERROR, Gst.MessageType.EOS):
            detail = message.parse_error()[0].message if message.type == Gst.MessageType.ERROR else "EOS"
            self._on_error(f"live mount {self.name}: {detail}")
        return True

    def _configure(self, _factory, media: GstRtspServer.RTSPMedia) -> None:
        appsrc = media.get_element().get_by_name("src")
        appsrc.set_property("caps", self.sink.get_static_pad("sink").get_current_caps())
        with self._lock:
            self._appsrcs.add(appsrc)

        def unprepared(_media) -> None:
            with self._lock:
                self._appsrcs.discard(appsrc)

        media.connect("unprepared", unprepared)

    def _on_sample(self, sink: Gst.Element) -> Gst.FlowReturn:
        sample = sink.emit("pull-sample")
        if sample is None:
            return Gst.FlowReturn.OK
        buffer, segment = sample.get_buffer(), sample.get_segment()
        if buffer.pts == Gst.CLOCK_TIME_NONE:
            return Gst.FlowReturn.OK
        if segment.base != self._round_base:
            self._new_round(segment)
        # the position in the file as a player counts it (qtdemux starts the segment at the first
        # PTS, after the B-frame delay), on the camera's timeline
        pts_timeline = self._round_start + buffer.pts - segment.start
        decode_lead = buffer.pts - buffer.dts if buffer.dts != Gst.CLOCK_TIME_NONE else 0
        # when the appsink let it go (it syncs on the DTS), as a time of the clock all pipelines share
        dts_clock = self.pipeline.get_base_time() + pts_timeline - decode_lead
        with self._lock:
            appsrcs = list(self._appsrcs)
        for appsrc in appsrcs:
            # a media that does not play would only queue up stale pictures (a live media plays
            # already while it prerolls, for its first client)
            if appsrc.get_state(0)[1] != Gst.State.PLAYING:
                continue
            out = buffer.copy()  # shallow: the memory is shared, the timestamps are the media's
            out.dts = max(0, dts_clock - appsrc.get_base_time())
            out.pts = out.dts + decode_lead
            appsrc.emit("push-buffer", out)
        return Gst.FlowReturn.OK

    def _new_round(self, segment: Gst.Segment) -> None:
        """At the first buffer of the file's first or next round (each segment seek gives the
        round a new segment base). GStreamer adds up the rounds from qtdemux's SEGMENT_DONE
        position, which with B-frames is one frame short of the round: the next round's first
        frame would repeat the last one's timestamp and the camera would run a frame fast per
        round. So the timeline is ours, each round as long as its segment, and the appsink paces
        on it through its ts-offset."""
        if self._round_base is not None:
            self.loops += 1
            self._round_start += self._round_length
        self._round_base = segment.base
        if segment.stop != Gst.CLOCK_TIME_NONE:
            self._round_length = segment.stop - segment.start
        else:
            ok, duration = self.pipeline.query_duration(Gst.Format.TIME)
            self._round_length = duration if ok and duration > 0 else 0
        self.sink.set_property("ts-offset", self._round_start - segment.base)


def obey(server: GstRtspServer.RTSPServer, factories: dict) -> bool:
    """One command from stdin (see the module's doc); False once stdin is closed, which ends the watch."""
    line = sys.stdin.readline()
    if not line:
        return False
    word, _, name = line.strip().partition(" ")
    if word not in ("drop", "restore") or name not in factories:
        print(f"unknown {line.strip()}", flush=True)
        return True
    path = "/" + name
    if word == "restore":
        server.get_mount_points().add_factory(path, factories[name])
        print(f"restored {name}", flush=True)
        return True
    server.get_mount_points().remove_factory(path)

    def close_watchers(_server, client, *_) -> GstRtspServer.RTSPFilterResult:
        watching = []

        def on_mount(_client, session, *_) -> GstRtspServer.RTSPFilterResult:
            media = session.get_media(path)
            if (media[0] if isinstance(media, tuple) else media) is None:
                return GstRtspServer.RTSPFilterResult.KEEP
            watching.append(session)
            # the session goes with its connection (removing it while its data flows aborts the server)
            return GstRtspServer.RTSPFilterResult.KEEP

        client.session_filter(on_mount, None)
        return GstRtspServer.RTSPFilterResult.REMOVE if watching else GstRtspServer.RTSPFilterResult.KEEP

    server.client_filter(close_watchers, None)
    print(f"dropped {name}", flush=True)
    return True


def parse_mount(parser: argparse.ArgumentParser, option: str, spec: str) -> tuple[str, Path]:
    name, sep, file = spec.partition("=")
    path = Path(file)
    if not sep or not name.strip("/") or not path.is_file():
        parser.error(f"{option} {spec!r}: expected NAME=FILE with an existing file")
    return name.strip("/"), path.resolve()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mount", action="append", default=[], metavar="NAME=FILE",
                        help="serve FILE (an H.264 MP4) at /NAME, from its start for each client; repeatable")
    parser.add_argument("--live-mount", action="append", default=[], metavar="NAME=FILE",
                        help="serve FILE (an H.264 MP4) at /NAME as a live camera, looping; repeatable")
    args = parser.parse_args(argv)
    if not args.mount and not args.live_mount:
        parser.error("give at least one --mount or --live-mount")

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    factories: dict[str, GstRtspServer.RTSPMediaFactory] = {}
    loop = GLib.MainLoop()
    failures: list[str] = []

    def fail(why: str) -> None:
        print(why, file=sys.stderr, flush=True)
        failures.append(why)
        loop.quit()

    for spec in args.mount:
        name, path = parse_mount(parser, "--mount", spec)
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch_line(path))
        factory.set_shared(False)  # a pipeline per client: each one starts at the beginning
        factory.set_eos_shutdown(True)
        mounts.add_factory("/" + name, factory)
        factories[name] = factory

    cameras = []
    for spec in args.live_mount:
        name, path = parse_mount(parser, "--live-mount", spec)
        camera = LiveCamera(name, path, fail)
        mounts.add_factory("/" + name, camera.factory)
        factories[name] = camera.factory
        cameras.append(camera)

    if cameras:
        # a thread per client: one whose live media prerolls (until the next picture comes) does
        # not hold up the others
        server.get_thread_pool().set_max_threads(64)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 1
    clock = Gst.SystemClock.obtain()
    for camera in cameras:
        camera.start(clock)
    # position 0 of every live mount is now, on both clocks
    base_time, started_wall = clock.get_time(), time.time()
    for camera in cameras:
        camera.play(base_time)
    GLib.io_add_watch(GLib.IOChannel.unix_new(sys.stdin.fileno()), GLib.PRIORITY_DEFAULT,
                      GLib.IOCondition.IN | GLib.IOCondition.HUP, lambda *_: obey(server, factories))
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, lambda: (loop.quit(), False)[1])
    print(f"ready {started_wall:.6f}", flush=True)
    loop.run()
    for camera in cameras:
        camera.stop()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
