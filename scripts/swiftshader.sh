#!/usr/bin/env bash
# SwiftShader, Google's software Vulkan device, for running LiteRT's GPU path without a GPU:
#   bash scripts/swiftshader.sh [DIR]          (default .venv/swiftshader)
#   export VK_ICD_FILENAMES=DIR/vk_swiftshader_icd.json
# Taken from Debian's chromium-common package (apt-get download: no install, no root needed for
# this step); the Vulkan loader itself is the libvulkan1 package (scripts/setup.sh installs it).
# Results on it are labelled "software GPU emulation": they show the GPU path works, not GPU speed.
set -euo pipefail
DIR=${1:-"$(dirname "$0")/../.venv/swiftshader"}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
if [ -f "$DIR/vk_swiftshader_icd.json" ] && [ -f "$DIR/libvk_swiftshader.so" ]; then
  echo "swiftshader: $DIR/vk_swiftshader_icd.json"; exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && { apt-get download chromium-common >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 &&
  apt-get download chromium-common >/dev/null 2>&1; }; }) || {
  echo "swiftshader: 'apt-get download chromium-common' failed (is a Debian/Ubuntu package mirror reachable?)" >&2; exit 1; }
dpkg-deb --fsys-tarfile "$tmp"/chromium-common_*.deb | tar -x -C "$tmp" ./usr/lib/chromium/libvk_swiftshader.so \
  ./usr/lib/chromium/vk_swiftshader_icd.json
cp "$tmp/usr/lib/chromium/libvk_swiftshader.so" "$tmp/usr/lib/chromium/vk_swiftshader_icd.json" "$DIR/"
echo "swiftshader: $DIR/vk_swiftshader_icd.json"
