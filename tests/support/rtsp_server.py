"""A real RTSP server for pedvision's tests and benchmarks (GStreamer's RTSP server
library through python3-gi), bound to 127.0.0.1.

    /usr/bin/python3 rtsp_server.py PORT [--file VIDEO] [--mounts N] [--fps F]
                                         [--size WxH] [--tcp-only]

Serves H.264 on rtsp://127.0.0.1:PORT/stream0 .. streamN-1: a live test pattern by
default (320x240 unless --size says otherwise), or VIDEO decoded, paced in real time and looped (like a camera). Prints
"ready" on stdout once it listens. Needs Debian's python3-gi,
gir1.2-gst-rtsp-server-1.0 and the GStreamer plugins (scripts/setup.sh).
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
gi.require_version("GstRtsp", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--file", default=None)
    ap.add_argument("--mounts", type=int, default=1)
    ap.add_argument("--fps", type=int, default=10)
    ap.add_argument("--size", default="320x240", help="test pattern size, WxH")
    ap.add_argument("--tcp-only", action="store_true", help="refuse UDP transport")
    args = ap.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    encode = "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 ! rtph264pay name=pay0 pt=96 config-interval=1"
    if args.file:
        # multifilesrc loops the file; identity sync=true paces it like a camera.
        source = (
            f'multifilesrc location="{args.file}" loop=true ! decodebin ! videoconvert ! '
            f"videorate ! video/x-raw,framerate={args.fps}/1 ! identity sync=true"
        )
    else:
        width, height = (int(v) for v in args.size.split("x"))
        source = f"videotestsrc is-live=true pattern=ball ! video/x-raw,width={width},height={height},framerate={args.fps}/1"
    for i in range(args.mounts):
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(f"( {source} ! {encode} )")
        factory.set_shared(True)
        if args.tcp_only:
            factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
        server.get_mount_points().add_factory(f"/stream{i}", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{args.port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
