#!/usr/bin/env bash
# Install the X virtual frame buffer and the xcb libraries Qt needs, if they are missing (Debian/Ubuntu).
# napari's OpenGL canvas cannot be created with QT_QPA_PLATFORM=offscreen, so GUI tests need a real X server.
set -euo pipefail
PKGS="xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-randr0 libxcb-render-util0 libxcb-image0 libxcb-shape0 libxkbcommon-x11-0 libgl1 libegl1 libfontconfig1 libdbus-1-3"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
[ -z "$missing" ] && exit 0
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "[setup] installing system packages:$missing" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
