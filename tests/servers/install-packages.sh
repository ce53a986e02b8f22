#!/usr/bin/env bash
# Debian packages the tests' real servers need: redis-server, a GStreamer RTSP server run under the
# system Python, and headless Chromium with its driver for the review page's browser test; and the
# CJK font (fonts-wqy-microhei) that page and the case dossier PDF (案卷) print Chinese with, which
# the review service needs on a server too. Installs only what is missing, so a prepared machine pays nothing.
set -euo pipefail
have_rtsp() {
  /usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer" \
    >/dev/null 2>&1 && gst-inspect-1.0 rtph264pay >/dev/null 2>&1 && gst-inspect-1.0 qtdemux >/dev/null 2>&1
}
have_browser() {
  command -v chromium >/dev/null && command -v chromedriver >/dev/null \
    && [ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ]
}
if command -v redis-server >/dev/null && have_rtsp && have_browser; then
  exit 0
fi
packages=(redis-server python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-tools
          gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
          chromium chromium-driver fonts-wqy-microhei)
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "installing test servers: ${packages[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
# the package starts a system-wide redis on 6379; the tests start their own on a free port
$sudo systemctl disable --now redis-server >/dev/null 2>&1 || true
