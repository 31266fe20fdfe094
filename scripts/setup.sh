#!/usr/bin/env bash
# Installs what MoIR needs on a Debian 12 machine. Idempotent: a no-op when all is present.
set -euo pipefail

PKGS=(
  llvm-22-dev libmlir-22-dev mlir-22-tools clang-22 llvm-22-tools lld-22
  ninja-build cmake g++ ccache libgtest-dev python3 python3-venv python3-dev
  rocm-device-libs
  qemu-user g++-aarch64-linux-gnu
  libsodium-dev libclang-rt-22-dev libpcre2-dev nlohmann-json3-dev libutf8proc-dev
  openmpi-bin libopenmpi-dev
  pocl-opencl-icd ocl-icd-libopencl1 clinfo
  mesa-vulkan-drivers libvulkan1 vulkan-tools
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -ne 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq
  $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${missing[@]}"
fi

# Halide 21, the second code generator (moirc --kernels=halide), from its
# PyPI wheel (libHalide with its own LLVM hidden inside, headers, CMake
# package) in a venv of the project's own; the build finds it there
# (lib/Target/Halide/CMakeLists.txt). Without it the build still works and
# says the Halide path is not built.
root="$(cd "$(dirname "$0")/.." && pwd)"
halide_venv="$root/.venv-halide"
if ! ls "$halide_venv"/lib/python3*/site-packages/halide/lib64/cmake/Halide/HalideConfig.cmake \
     >/dev/null 2>&1; then
  echo "setup: installing Halide 21 (PyPI wheel) into $halide_venv"
  rm -rf "$halide_venv"
  if ! { python3 -m venv "$halide_venv" &&
         "$halide_venv/bin/pip" install -q --disable-pip-version-check 'halide==21.0.0'; }; then
    echo "setup: Halide could not be installed; the Halide code generator is not built"
    rm -rf "$halide_venv"
  fi
fi

# NVIDIA's SASS disassembler, for the tests that check the instructions the
# NVIDIA kernels assemble to (HMMA for --gpu-tensor-cores): where a CUDA
# toolkit with ptxas has no nvdisasm of its own, NVIDIA's PyPI wheel of it
# in a venv of the project's own. Without it those checks report unsupported.
cuda_home="${CUDA_HOME:-/usr/local/cuda}"
cuda_tools="$root/.venv-cuda-tools"
if [ -x "$cuda_home/bin/ptxas" ] && [ ! -x "$cuda_home/bin/nvdisasm" ] &&
   ! ls "$cuda_tools"/lib/python3*/site-packages/nvidia/cu13/bin/nvdisasm >/dev/null 2>&1; then
  echo "setup: installing nvdisasm (PyPI nvidia-cuda-nvdisasm) into $cuda_tools"
  rm -rf "$cuda_tools"
  if ! { python3 -m venv "$cuda_tools" &&
         "$cuda_tools/bin/pip" install -q --disable-pip-version-check \
           'nvidia-cuda-nvdisasm==13.5.37'; }; then
    echo "setup: nvdisasm could not be installed; the SASS checks report unsupported"
    rm -rf "$cuda_tools"
  fi
fi
