#!/usr/bin/env bash
# An emulated aarch64 "Raspberry Pi" Python for the rpi target tests, without a Pi:
#   bash scripts/arm64_pi.sh [DIR]        (default .venv/arm64-pi; ~40 s and ~450 MB the first time)
# DIR/python then runs Debian bookworm's arm64 python3.11 under qemu-user (qemu-user-static), with
# numpy and ai-edge-litert's aarch64 wheels from PyPI; the test suite uses it as the "remote
# python" behind its loopback sshd. No binfmt, no root filesystem boot: debootstrap's first
# stage downloads the arm64 packages, dpkg-deb unpacks them. Emulated timings mean nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-.venv/arm64-pi}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
ROOT="$DIR/rootfs"
if [ -f "$DIR/.done" ] && grep -qs cortex "$DIR/python"; then echo "arm64 pi: $DIR/python"; exit 0; fi
for tool in debootstrap qemu-aarch64-static dpkg-deb; do
  command -v "$tool" >/dev/null || { echo "arm64 pi: $tool missing (apt-get install debootstrap qemu-user-static)" >&2; exit 1; }
done
MIRROR=${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *\([^ ]*\/debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)}
MIRROR=${MIRROR:-$(awk '$1 == "deb" && $3 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)}
[ -n "$MIRROR" ] || { echo "arm64 pi: no Debian mirror found in apt's sources; set DEBIAN_MIRROR" >&2; exit 1; }
rm -rf "$ROOT"
debootstrap --foreign --arch=arm64 --variant=minbase --include=python3 bookworm "$ROOT" "$MIRROR" >"$DIR/debootstrap.log" 2>&1 || {
  echo "arm64 pi: debootstrap failed, see $DIR/debootstrap.log" >&2; exit 1; }
for deb in "$ROOT"/var/cache/apt/archives/*.deb; do dpkg-deb -x "$deb" "$ROOT"; done
# the runtime's CPU probe reads these; without them it crashes under qemu-user
mkdir -p "$ROOT/sys/devices/system/cpu"
echo 0-3 > "$ROOT/sys/devices/system/cpu/possible"; echo 0-3 > "$ROOT/sys/devices/system/cpu/present"
PYVER=$(ls "$ROOT/usr/bin" | sed -n 's/^python\(3\.[0-9]*\)$/\1/p' | head -1)
PIP_ROOT_USER_ACTION=ignore "${PYTHON:-python3}" -m pip install --quiet --platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64 --platform manylinux2014_aarch64 \
  --python-version "$PYVER" --implementation cp --only-binary=:all: --target "$ROOT/opt/site" \
  "ai-edge-litert==2.3.0" "numpy>=1.26,<3"
# The CPU is a Pi 4's Cortex-A72 (QEMU_CPU=cortex-a76 for a Pi 5). Not qemu's default "max": with
# it, XNNPACK picks int8 kernels for CPU features that emulation gets wrong (outputs all off).
cat > "$DIR/python" <<WRAP
#!/bin/sh
# Debian arm64 python$PYVER under qemu-user on a Cortex-A72: an emulated Raspberry Pi 4 (64-bit OS) Python.
PYTHONPATH=/opt/site exec qemu-aarch64-static -cpu "\${QEMU_CPU:-cortex-a72}" -L "$ROOT" "$ROOT/usr/bin/python$PYVER" "\$@"
WRAP
chmod +x "$DIR/python"
"$DIR/python" -c "import platform, numpy, ai_edge_litert; assert platform.machine() == 'aarch64'" 2>/dev/null
touch "$DIR/.done"
echo "arm64 pi: $DIR/python"
