#!/usr/bin/env bash
# Prepares a fresh Debian machine for HAVEN; safe to run again (every step is skipped when done).
#  1. system packages the opencv crate and the demo need (and nats-server, for the cluster tests;
#     mosquitto, for the MQTT tests, which start their own on a free port)
#  2. the demo videos data/1.mp4 data/2.mp4 data/3.mp4 (OpenCV's pedestrian clip from Debian's opencv-doc)
#     and data/still.mp4 (one frame of it held for 20 s: a scene where nothing moves)
#  3. the pose weights (scripts/fetch-weights.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

packages=(libopencv-dev clang libclang-dev ffmpeg unzip python3 python3-pip pkg-config nats-server mosquitto
  python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  # The tests start their own mosquitto on a free port; the system service Debian starts with the
  # package would hold 1883 for nothing, so one installed here is stopped and not started at boot.
  if [[ " ${missing[*]} " == *" mosquitto "* ]] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now mosquitto >/dev/null 2>&1 || true
  fi
fi

mkdir -p data
if [ ! -s data/vtest.avi ]; then
  echo "setup: extracting vtest.avi from Debian's opencv-doc"
  tmp=$(mktemp -d)
  (cd "$tmp" && { apt-get download opencv-doc >/dev/null 2>&1 || { $SUDO apt-get update -qq && apt-get download opencv-doc >/dev/null; }; } && \
     dpkg-deb --fsys-tarfile opencv-doc_*_all.deb | tar -x ./usr/share/doc/opencv-doc/examples/data/vtest.avi)
  cp "$tmp/usr/share/doc/opencv-doc/examples/data/vtest.avi" data/vtest.avi
  rm -rf "$tmp"
fi

# Three demo cameras: three different stretches of the 79.5 s clip, H.264 at the native 768x576, 10 fps.
make_segment() { # name start duration
  if [ ! -s "data/$1" ]; then
    echo "setup: making data/$1"
    ffmpeg -loglevel error -y -ss "$2" -t "$3" -i data/vtest.avi -an -c:v libx264 -preset veryfast \
      -pix_fmt yuv420p -bf 0 -g 10 "data/$1.tmp.mp4"
    mv "data/$1.tmp.mp4" "data/$1"
  fi
}
make_segment 1.mp4 0 26
make_segment 2.mp4 26 26
make_segment 3.mp4 52 27

# A still scene for the capacity benchmark and the motion gate's tests: one frame of the same footage
# (an empty stretch of the plaza's edge would do, but any frame shows a scene where nothing moves)
# held for 20 s, encoded like the demo videos.
if [ ! -s data/still.mp4 ]; then
  echo "setup: making data/still.mp4"
  ffmpeg -loglevel error -y -ss 30 -i data/vtest.avi -frames:v 1 -f image2 data/still.tmp.png
  ffmpeg -loglevel error -y -loop 1 -framerate 10 -t 20 -i data/still.tmp.png -an -c:v libx264 -preset veryfast \
    -pix_fmt yuv420p -bf 0 -g 10 data/still.tmp.mp4
  mv data/still.tmp.mp4 data/still.mp4
  rm -f data/still.tmp.png
fi

if [ -x scripts/fetch-weights.sh ] || [ -f scripts/fetch-weights.sh ]; then
  bash scripts/fetch-weights.sh
fi
echo "setup: done"
