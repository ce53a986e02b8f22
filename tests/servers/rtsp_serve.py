#!/usr/bin/python3
"""A loopback RTSP server for the tests, run under the system Python (Debian's GStreamer RTSP server).

    rtsp_serve.py --port 8554 --mount street=/path/sample.mp4 [--mount other=/path/b.mp4]

Serves each H.264 MP4 at ``rtsp://127.0.0.1:PORT/NAME`` (RTP over RTSP-interleaved TCP or UDP,
whatever the client asks). Every client gets its own pipeline, so each one starts at the file's
beginning, as a camera would start at "now"; the stream ends with the file (no looping: the
media's bus belongs to the RTSP server, so a segment-seek loop would need a media subclass; the
tests' 150 s sample is long enough). Prints one ``ready`` line on stdout once it listens; exits 0
on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer


def launch_line(path: Path) -> str:
    location = str(path).replace("\\", "\\\\").replace('"', '\\"')
    return (f'( filesrc location="{location}" ! qtdemux ! h264parse ! '
            "rtph264pay name=pay0 pt=96 config-interval=1 )")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mount", action="append", required=True, metavar="NAME=FILE",
                        help="serve FILE (an H.264 MP4) at /NAME; repeatable")
    args = parser.parse_args(argv)

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for spec in args.mount:
        name, sep, file = spec.partition("=")
        path = Path(file)
        if not sep or not name or not path.is_file():
            parser.error(f"--mount {spec!r}: expected NAME=FILE with an existing file")
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch_line(path.resolve()))
        factory.set_shared(False)  # a pipeline per client: each one starts at the beginning
        factory.set_eos_shutdown(True)
        mounts.add_factory("/" + name.strip("/"), factory)

    loop = GLib.MainLoop()
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 1
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, lambda: (loop.quit(), False)[1])
    print("ready", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
