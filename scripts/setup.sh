#!/usr/bin/env bash
# Installs what MoIR needs on a Debian 12 machine. Idempotent: a no-op when all is present.
set -euo pipefail

PKGS=(
  llvm-22-dev libmlir-22-dev mlir-22-tools clang-22 llvm-22-tools lld-22
  ninja-build cmake g++ libgtest-dev python3 python3-venv python3-dev
  rocm-device-libs
  qemu-user g++-aarch64-linux-gnu
  libsodium-dev libclang-rt-22-dev libpcre2-dev nlohmann-json3-dev libutf8proc-dev
  openmpi-bin libopenmpi-dev
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "setup: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq
$SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${missing[@]}"
