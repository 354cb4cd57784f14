#!/usr/bin/env bash
# Install everything edge_fer and its tests need into ./.venv (idempotent; re-run after pulling).
#   bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the test suite uses (installed only when missing; needs root or sudo).
APT_PACKAGES=(
  openssh-server    # a real sshd on loopback for the rpi target tests
  libvulkan1        # Vulkan loader: LiteRT's GPU path on SwiftShader (software Vulkan) in the gpu tests
  debootstrap       # an arm64 Debian root filesystem ...
  qemu-user-static  # ... run under qemu-user: the emulated Raspberry Pi of the rpi tests
)
PY=${PYTHON:-python3}

need_apt=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if ! "$PY" -m venv --help >/dev/null 2>&1; then need_apt+=(python3-venv); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements.lock -nt "$stamp" ]; then
  echo "setup: pip install -e .[test] with the versions of requirements.lock (first time: a few minutes, ~2.5 GB)"
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet -c requirements.lock -e ".[test]"
  touch "$stamp"
fi

# SwiftShader (software Vulkan device) for the gpu target tests: .venv/swiftshader/
bash scripts/swiftshader.sh .venv/swiftshader >/dev/null
# An emulated aarch64 Raspberry Pi Python for the rpi target tests: .venv/arm64-pi/python
PYTHON=.venv/bin/python bash scripts/arm64_pi.sh .venv/arm64-pi >/dev/null
